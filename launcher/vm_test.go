package launcher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmre/vmre/client"
)

// runTestVM is the test binary's life as a VM. Each mode is one kind of VM
// the launcher must handle.
func runTestVM(mode string) int {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	switch mode {
	case "ok":
		return serve(ctx, logger)
	case "mismatch":
		return serve(ctx, logger, client.WithProtocolVersion(2))
	case "exit3":
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "fatal: the database is locked")
		return 3
	case "never":
		// Never calls back; exits on SIGTERM.
		waitSignal(syscall.SIGTERM)
		return 0
	case "stubborn":
		// Handshakes, then ignores SIGTERM and its lease.
		signal.Ignore(syscall.SIGTERM)
		if _, err := client.Initialize(ctx, "127.0.0.1:1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		select {}
	case "grandchild":
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), vmModeKey+"=orphan")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("grandchild=%d\n", child.Process.Pid)
		return serve(ctx, logger)
	case "orphan":
		signal.Ignore(syscall.SIGTERM)
		select {}
	case "logs":
		logger.Warn("disk almost full", "free_mb", 12)
		logger.Error("peer dropped", "peer", "n1")
		fmt.Println(`{"level":"warn","ts":1700000000.1,"msg":"zap style","k":"v"}`)
		fmt.Println(`{"@level":"error","@message":"hclog style","@timestamp":"2024-01-01T00:00:00Z"}`)
		fmt.Println(`{"@level":"trace","@message":"hclog trace"}`)
		fmt.Println(`{"level":10,"time":1700000000000,"pid":7,"hostname":"h","msg":"pino trace"}`)
		fmt.Println(`{"level":40,"time":1700000000000,"msg":"pino warn","ratio":1.5}`)
		fmt.Println("plain line")
		return serve(ctx, logger)
	case "bigline":
		os.Stdout.Write([]byte(strings.Repeat("x", 1<<20)))
		fmt.Println()
		fmt.Println("after the big line")
		return serve(ctx, logger)
	case "quick":
		// Handshakes, then exits on its own.
		if _, err := client.Initialize(ctx, "127.0.0.1:1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println("env:", kv)
		}
		return serve(ctx, logger)
	case "legacy":
		return legacyVM(false)
	case "legacy-stubborn":
		return legacyVM(true)
	// Faults (fault_test.go).
	case "crash-before":
		return crashBeforeHandshakeVM()
	case "crash-after":
		return crashAfterHandshakeVM()
	case "killself":
		return killSelfVM()
	case "frozen":
		return frozenVM()
	case "escapee":
		return escapeeVM(ctx, logger)
	case "grandchild-exit":
		return grandchildExitVM()
	case "closestdout":
		return closeStdoutVM(ctx, logger)
	case "hugeline":
		return hugeLineVM(ctx, logger)
	case "flood":
		return floodVM(ctx, logger)
	case "twice":
		return twiceVM(ctx)
	case "late":
		return lateVM()
	// Hosts and their VMs (hostdeath_test.go).
	case "host":
		return hostProcess()
	case "host-lease":
		return leaseHostProcess()
	case "nolease":
		return serve(ctx, logger, client.WithoutLease())
	}
	fmt.Fprintf(os.Stderr, "unknown test VM mode %q\n", mode)
	return 2
}

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
