package admin_test

import (
	"bufio"
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
		// badbytes: writes a line that is not UTF-8 and one with terminal
		// escapes, then "after N", every 20 ms while it serves.
		"badbytes": func([]string) int {
			return serve(func(*slog.Logger) {
				for i := 0; ; i++ {
					fmt.Fprintf(os.Stderr, "x\xff\n\x1b]0;PWNED\x07\x1b[2J\nafter %d\n", i)
					time.Sleep(20 * time.Millisecond) // the VM's own pace, not a wait of the test
				}
			})
		},
		// burst: on each SIGUSR1, writes burstLines numbered lines to stderr
		// as fast as it can, the last "burst end", then stays silent.
		"burst": func([]string) int {
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			return serve(func(*slog.Logger) {
				for range usr1 {
					w := bufio.NewWriter(os.Stderr)
					for i := range burstLines {
						fmt.Fprintf(w, "burst %d 0123456789abcdef0123456789abcdef\n", i)
					}
					fmt.Fprintln(w, "burst end")
					w.Flush()
				}
			})
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

// burstLines is how many lines a "burst" VM writes at a time.
const burstLines = 20000

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
