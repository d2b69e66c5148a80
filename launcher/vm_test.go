package launcher_test

import (
	"bufio"
	"context"
	"errors"
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
//
// A VM that a test signals sets up its handling of the signal before it
// does anything the test waits for (its handshake, a line it prints):
// otherwise the signal can come first and end it by the default action.
var vms = map[string]vmretest.Helper{
	"ok": func([]string) int {
		return serve(context.Background(), pingMux())
	},
	"mismatch": func([]string) int {
		return serve(context.Background(), pingMux(), client.WithProtocolVersion(2))
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
		blockForever()
		return 0
	},
	"grandchild": func([]string) int {
		child, err := startIgnoringChild(false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("grandchild=%d\n", child)
		return serve(context.Background(), pingMux())
	},
	"orphan": func([]string) int {
		// Ignores SIGTERM, then says so on the file readyFDKey names, if
		// any, and lives until it is killed.
		signal.Ignore(syscall.SIGTERM)
		if os.Getenv(readyFDKey) != "" {
			ready := os.NewFile(3, "ready")
			fmt.Fprintln(ready, ignoringSIGTERM)
			ready.Close()
		}
		blockForever()
		return 0
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
		return serve(context.Background(), pingMux())
	},
	"bigline": func([]string) int {
		os.Stdout.Write([]byte(strings.Repeat("x", 1<<20)))
		fmt.Println()
		fmt.Println("after the big line")
		return serve(context.Background(), pingMux())
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
		return serve(context.Background(), pingMux())
	},
	"sigcount": func([]string) int {
		return sigCountVM()
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
		return escapeeVM()
	},
	"grandchild-exit": func([]string) int {
		return grandchildExitVM()
	},
	"closestdout": func([]string) int {
		return closeStdoutVM()
	},
	"hugeline": func([]string) int {
		return hugeLineVM()
	},
	"flood": func([]string) int {
		return floodVM()
	},
	"lastwords": func([]string) int {
		return lastWordsVM()
	},
	"twice": func([]string) int {
		return twiceVM(context.Background())
	},
	// Hosts and their VMs (reaper_test.go).
	"reaper": func([]string) int {
		return reaperProcess()
	},
	"host": func([]string) int {
		return hostProcess()
	},
	"host-lease": func([]string) int {
		return leaseHostProcess()
	},
	"host-pipe": func([]string) int {
		return pipeHostProcess()
	},
	"host-nofds": func([]string) int {
		return noFDsHostProcess()
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
	"fullqueue": func([]string) int {
		return fullQueueVM()
	},
	"nolease": func([]string) int {
		return serve(context.Background(), pingMux(), client.WithoutLease())
	},
	"ticker": func([]string) int {
		return tickerVM()
	},
}

// logger is the JSON logger of the test VMs.
var logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))

// pingMux answers /ping with "pong".
func pingMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })
	return mux
}

// vmReadyKey makes a VM print "ready=PID" on stdout once its handshake is
// over on its side, for a test that must not signal it before.
const vmReadyKey = "VMRE_TEST_VM_READY"

func announceReady() {
	if os.Getenv(vmReadyKey) != "" {
		fmt.Printf("ready=%d\n", os.Getpid())
	}
}

// serve is a VM's life on client.Serve, serving h.
func serve(ctx context.Context, h http.Handler, opts ...client.Option) int {
	opts = append(opts, client.WithLogger(logger), client.WithShutdownTimeout(time.Second),
		client.WithOnReady(func(client.Ready) { announceReady() }))
	if err := client.Serve(ctx, h, opts...); err != nil {
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

// blockForever blocks for good. Unlike an empty select, a sleep keeps the
// runtime from ending a program whose goroutines all block as deadlocked.
func blockForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// readyFDKey tells an "orphan" to write ignoringSIGTERM to its fd 3 once
// it ignores SIGTERM.
const (
	readyFDKey      = "VMRE_TEST_READY_FD"
	ignoringSIGTERM = "ignoring SIGTERM"
)

// startIgnoringChild starts an "orphan" child, in a session of its own when
// setsid is set, and returns its pid once the child ignores SIGTERM: a stop
// signal sent from then on cannot end it, so only a SIGKILL can.
func startIgnoringChild(setsid bool, stdio ...*os.File) (int, error) {
	return startOrphan(setsid, vmretest.Command("orphan").Env, stdio...)
}

// startOrphan is startIgnoringChild with the child's environment, to
// which it adds readyFDKey.
func startOrphan(setsid bool, env []string, stdio ...*os.File) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	child := vmretest.Command("orphan")
	child.Env = append(env, readyFDKey+"=3")
	child.ExtraFiles = []*os.File{w}
	if len(stdio) == 2 {
		child.Stdout, child.Stderr = stdio[0], stdio[1]
	}
	if setsid {
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	err = child.Start()
	w.Close()
	if err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) != ignoringSIGTERM {
		child.Process.Kill()
		return 0, errors.Join(fmt.Errorf("the child said %q; want %q", line, ignoringSIGTERM), err)
	}
	return child.Process.Pid, nil
}

// sigCountVM serves as "ok" does, and counts the SIGTERMs it receives:
// GET /sigterms answers how many came so far. Before it answers, it sends
// itself SIGWINCH and waits for it: the kernel delivers pending signals
// lowest number first (SIGTERM is 15, SIGWINCH 28) and Go passes them on in
// that order, so a SIGTERM that was queued for the VM before the request
// has been counted by then.
func sigCountVM() int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGWINCH)
	asks := make(chan chan int)
	go func() {
		terms := 0
		var waiting []chan int
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGTERM {
					terms++
					continue
				}
				for _, w := range waiting {
					w <- terms
				}
				waiting = nil
			case w := <-asks:
				waiting = append(waiting, w)
			}
		}
	}()
	mux := pingMux()
	mux.HandleFunc("/sigterms", func(w http.ResponseWriter, _ *http.Request) {
		answer := make(chan int, 1)
		asks <- answer
		syscall.Kill(os.Getpid(), syscall.SIGWINCH)
		fmt.Fprint(w, <-answer)
	})
	return serve(context.Background(), mux)
}

// tickerVM handshakes, ignores SIGTERM, takes no lease and writes a line to
// stderr every few milliseconds, as a VM that logs now and then: once its
// host is dead, nothing but the broken pipe of its next line ends it.
func tickerVM() int {
	signal.Ignore(syscall.SIGTERM)
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	announceReady()
	for i := 0; ; i++ {
		fmt.Fprintf(os.Stderr, "tick %d\n", i)
		time.Sleep(5 * time.Millisecond)
	}
}
