package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// TestMain runs the benchmarks, removes the VMs it built, and fails the
// package when a benchmark leaves a goroutine behind: every benchmark stops
// its VMs and engines and waits for them.
func TestMain(m *testing.M) { vmretest.Main(m, nil, vmretest.RemoveDir(&builtDir)) }

// pluginsKey names a directory that already holds the plugins, for running
// a compiled benchmark binary outside the module (under strace or perf):
//
//	CGO_ENABLED=0 go build -o /tmp/p/ ./bench/internal/... ./cmd/examplevm && go test -c -o /tmp/p/bench.test ./bench
//	VMRE_BENCH_PLUGINS=/tmp/p /tmp/p/bench.test -test.run '^$' -test.bench Launch/vmre
const pluginsKey = "VMRE_BENCH_PLUGINS"

// The plugins, built once per run by the first benchmark that needs them.
var (
	buildOnce sync.Once
	binDir    string
	builtDir  string // binDir when this run built it, removed at the end
	buildErr  error
)

type pluginSet struct {
	floor   string // bench/internal/floorvm
	minimal string // bench/internal/minvm
	logs    string // bench/internal/logvm
	example string // cmd/examplevm
}

// plugins builds the plugins, without the race detector whatever flags the
// benchmark itself was built with, and returns their paths.
func plugins(b *testing.B) pluginSet {
	b.Helper()
	buildOnce.Do(func() {
		if binDir = os.Getenv(pluginsKey); binDir != "" {
			return
		}
		binDir, buildErr = os.MkdirTemp("", "vmre-bench-")
		if buildErr != nil {
			return
		}
		builtDir = binDir
		const pkg = "github.com/vmre/vmre/bench/internal/"
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			pkg+"floorvm", pkg+"minvm", pkg+"logvm", "github.com/vmre/vmre/cmd/examplevm")
		cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build the benchmark's plugins: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return pluginSet{
		floor:   filepath.Join(binDir, "floorvm"),
		minimal: filepath.Join(binDir, "minvm"),
		logs:    filepath.Join(binDir, "logvm"),
		example: filepath.Join(binDir, "examplevm"),
	}
}

// listen returns a listener on a free loopback port, closed when b ends.
func listen(b *testing.B) net.Listener {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln
}

// engine is a server.Engine served on 127.0.0.1 that also tells when a VM
// has taken its lease: from then on the VM is settled, with everything it
// holds on the host in place.
type engine struct {
	*server.Engine
	addr   string
	leases chan struct{} // one value per lease taken
}

func serveEngine(b *testing.B) *engine {
	b.Helper()
	ln := listen(b)
	e := &engine{Engine: server.New(server.Config{}), addr: ln.Addr().String(), leases: make(chan struct{}, 1024)}
	h := e.Handler()
	observed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == runtimev1connect.RuntimeServiceLeaseProcedure {
			w = &leaseWriter{ResponseWriter: w, leases: e.leases}
		}
		h.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, observed) }()
	b.Cleanup(func() {
		e.Close()
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
	return e
}

// awaitLeases waits for n leases to be taken.
func (e *engine) awaitLeases(b *testing.B, n int) {
	b.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case <-e.leases:
		case <-timeout.C:
			b.Fatalf("VMs did not take their leases within 10s")
		}
	}
}

// leaseWriter reports the first flush of a lease stream: the engine has
// accepted the lease and sent its first message.
type leaseWriter struct {
	http.ResponseWriter
	once   sync.Once
	leases chan<- struct{}
}

func (w *leaseWriter) Flush() {
	w.ResponseWriter.(http.Flusher).Flush()
	w.once.Do(func() {
		select {
		case w.leases <- struct{}{}:
		default:
		}
	})
}

func (w *leaseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// snapshot is the host's goroutines, live heap and goroutine stacks after a
// full GC, and its goroutines in a system call, each of which holds an OS
// thread.
type snapshot struct {
	goroutines int
	heap       uint64
	stack      uint64
	inSyscall  uint64
}

func takeSnapshot() snapshot {
	runtime.GC()
	runtime.GC() // the first may leave finalizers' garbage
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	notInGo := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(notInGo)
	return snapshot{
		goroutines: runtime.NumGoroutine(),
		heap:       ms.HeapAlloc,
		stack:      ms.StackInuse,
		inSyscall:  notInGo[0].Value.Uint64(),
	}
}
