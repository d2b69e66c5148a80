package launcher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// vms are the test binary's lives as a VM, by mode (vmretest.Command). Each
// is one kind of VM the launcher must handle.
var vms = map[string]vmretest.Helper{
	"ok": func([]string) int {
		return serve(context.Background(), logger)
	},
	"mismatch": func([]string) int {
		return serve(context.Background(), logger, client.WithProtocolVersion(2))
	},
	"exit3": func([]string) int {
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "fatal: the database is locked")
		return 3
	},
	"never": func([]string) int {
		// Never calls back; exits on SIGTERM.
		waitSignal(syscall.SIGTERM)
		return 0
	},
	"stubborn": func([]string) int {
		// Handshakes, then ignores SIGTERM and its lease.
		signal.Ignore(syscall.SIGTERM)
		if _, err := initializeListening(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		select {}
	},
	"grandchild": func([]string) int {
		child := vmretest.Command("orphan")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("grandchild=%d\n", child.Process.Pid)
		return serve(context.Background(), logger)
	},
	"orphan": func([]string) int {
		signal.Ignore(syscall.SIGTERM)
		select {}
	},
	"logs": func([]string) int {
		logger.Warn("disk almost full", "free_mb", 12)
		logger.Error("peer dropped", "peer", "n1")
		fmt.Println(`{"level":"warn","ts":1700000000.1,"msg":"zap style","k":"v"}`)
		fmt.Println(`{"@level":"error","@message":"hclog style","@timestamp":"2024-01-01T00:00:00Z"}`)
		fmt.Println(`{"@level":"trace","@message":"hclog trace"}`)
		fmt.Println(`{"level":10,"time":1700000000000,"pid":7,"hostname":"h","msg":"pino trace"}`)
		fmt.Println(`{"level":40,"time":1700000000000,"msg":"pino warn","ratio":1.5}`)
		fmt.Println("plain line")
		return serve(context.Background(), logger)
	},
	"bigline": func([]string) int {
		os.Stdout.Write([]byte(strings.Repeat("x", 1<<20)))
		fmt.Println()
		fmt.Println("after the big line")
		return serve(context.Background(), logger)
	},
	"quick": func([]string) int {
		// Handshakes, then exits on its own.
		if _, err := initializeListening(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	},
	"env": func([]string) int {
		for _, kv := range os.Environ() {
			fmt.Println("env:", kv)
		}
		return serve(context.Background(), logger)
	},
	"legacy": func([]string) int {
		return legacyVM(false)
	},
	"legacy-stubborn": func([]string) int {
		return legacyVM(true)
	},
	// Faults (fault_test.go).
	"crash-before": func([]string) int {
		return crashBeforeHandshakeVM()
	},
	"crash-after": func([]string) int {
		return crashAfterHandshakeVM()
	},
	"killself": func([]string) int {
		return killSelfVM()
	},
	"frozen": func([]string) int {
		return frozenVM()
	},
	"escapee": func([]string) int {
		return escapeeVM(context.Background(), logger)
	},
	"grandchild-exit": func([]string) int {
		return grandchildExitVM()
	},
	"closestdout": func([]string) int {
		return closeStdoutVM(context.Background(), logger)
	},
	"hugeline": func([]string) int {
		return hugeLineVM(context.Background(), logger)
	},
	"flood": func([]string) int {
		return floodVM(context.Background(), logger)
	},
	"twice": func([]string) int {
		return twiceVM(context.Background())
	},
	"late": func([]string) int {
		return lateVM()
	},
	// Hosts and their VMs (hostdeath_test.go).
	"host": func([]string) int {
		return hostProcess()
	},
	"host-lease": func([]string) int {
		return leaseHostProcess()
	},
	"host-pipe": func([]string) int {
		return pipeHostProcess()
	},
	"ok-ready": func([]string) int {
		return readyLineVM()
	},
	// The host's client of the VM (ready_test.go).
	"whoami": func([]string) int {
		return whoamiVM()
	},
	"http1": func([]string) int {
		return http1VM()
	},
	"unreachable": func([]string) int {
		return unreachableVM()
	},
	"nolease": func([]string) int {
		return serve(context.Background(), logger, client.WithoutLease())
	},
}

// logger is the JSON logger of the test VMs.
var logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))

func serve(ctx context.Context, logger *slog.Logger, opts ...client.Option) int {
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })
	opts = append(opts, client.WithLogger(logger), client.WithShutdownTimeout(time.Second))
	if err := client.Serve(ctx, mux, opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func waitSignal(sig os.Signal) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	<-c
}
