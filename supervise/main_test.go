package supervise_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// TestMain runs the test binary as one of the test VMs when
// vmretest.Command started it as one.
func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{
		// serve: a VM on client.Serve that runs until stopped.
		"serve": func([]string) int { return serve(context.Background()) },
		// crash: handshakes, runs for args[0] (a duration), then exits 1.
		"crash": func(args []string) int {
			d, err := time.ParseDuration(args[0])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := func(client.Ready) { time.AfterFunc(d, cancel) }
			if serve(ctx, client.WithOnReady(ready)) != 0 {
				return 2
			}
			return 1
		},
		// stubborn: handshakes and serves, ignoring SIGTERM: only SIGKILL
		// ends it.
		"stubborn": func([]string) int {
			signal.Ignore(syscall.SIGTERM)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if _, err := client.Initialize(context.Background(), ln.Addr().String()); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			http.Serve(ln, http.NewServeMux())
			return 1
		},
		// mismatch: announces protocol version 2.
		"mismatch": func([]string) int {
			if err := client.Serve(context.Background(), http.NewServeMux(), client.WithProtocolVersion(2)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			return 0
		},
	})
}

func serve(ctx context.Context, opts ...client.Option) int {
	opts = append(opts, client.WithShutdownTimeout(time.Second))
	if err := client.Serve(ctx, http.NewServeMux(), opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// wantGone fails the test unless pid has gone.
func wantGone(t *testing.T, pid int) {
	t.Helper()
	if pid != 0 && !vmretest.ProcessGone(pid) {
		t.Errorf("pid %d still runs", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
