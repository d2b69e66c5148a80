package admin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// TestMain runs the test binary as a test VM when vmretest.Command
// started it as one.
func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{
		// serve: a VM on client.Serve that runs until stopped.
		"serve": func([]string) int { return serve(nil) },
		// chatty: logs "tick N" every 20 ms while it serves.
		"chatty": func([]string) int {
			return serve(func(log *slog.Logger) {
				for i := 0; ; i++ {
					log.Info("tick", "n", i)
					time.Sleep(20 * time.Millisecond) // the VM's own pace, not a wait of the test
				}
			})
		},
		// stubborn: serves without a lease and ignores SIGTERM once ready:
		// only SIGKILL ends it.
		"stubborn": func([]string) int {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			err := client.Serve(context.Background(), http.NewServeMux(), client.WithLogger(log), client.WithoutLease(),
				client.WithOnReady(func(client.Ready) {
					signal.Ignore(syscall.SIGTERM)
					log.Info("ignoring SIGTERM")
				}))
			fmt.Fprintln(os.Stderr, err)
			return 1
		},
		// flood: logs as fast as it can while it serves.
		"flood": func([]string) int {
			return serve(func(log *slog.Logger) {
				for i := 0; ; i++ {
					log.Info("flood", "n", i, "pad", "0123456789abcdef0123456789abcdef0123456789abcdef")
				}
			})
		},
	})
}

// serve runs a VM on client.Serve, with logger writing JSON to stderr
// handed to talk in a goroutine once the VM is ready.
func serve(talk func(*slog.Logger)) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	opts := []client.Option{client.WithLogger(log), client.WithShutdownTimeout(time.Second)}
	if talk != nil {
		opts = append(opts, client.WithOnReady(func(client.Ready) { go talk(log) }))
	}
	if err := client.Serve(context.Background(), http.NewServeMux(), opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
