package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/sandbox"
)

// TestMain runs the benchmarks, removes the VMs it built, and fails the
// package when a benchmark leaves a goroutine behind: every benchmark stops
// its VMs and engines and waits for them.
func TestMain(m *testing.M) {
	sandbox.Init() // BenchmarkLaunchSandbox's init step re-executes this binary
	vmretest.Main(m, nil, vmretest.RemoveDir(&builtDir))
}

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
	floor    string // bench/internal/floorvm
	minimal  string // bench/internal/minvm
	logs     string // bench/internal/logvm
	example  string // cmd/examplevm
	initStep string // bench/internal/sandboxinit
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
			pkg+"floorvm", pkg+"minvm", pkg+"logvm", pkg+"sandboxinit", "github.com/vmre/vmre/cmd/examplevm")
		cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build the benchmark's plugins: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return pluginSet{
		floor:    filepath.Join(binDir, "floorvm"),
		minimal:  filepath.Join(binDir, "minvm"),
		logs:     filepath.Join(binDir, "logvm"),
		example:  filepath.Join(binDir, "examplevm"),
		initStep: filepath.Join(binDir, "sandboxinit"),
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

// snapshot is the host's goroutines, live heap and goroutine stacks after a
// full GC, its goroutines in a system call, each of which holds an OS
// thread, and its open file descriptors (on Linux; 0 elsewhere), of which
// sockets.
type snapshot struct {
	goroutines int
	heap       uint64
	stack      uint64
	inSyscall  uint64
	fds        int
	sockets    int
}

func takeSnapshot() snapshot {
	runtime.GC()
	runtime.GC() // the first may leave finalizers' garbage
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	notInGo := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(notInGo)
	fds, sockets := openFDs()
	return snapshot{
		goroutines: runtime.NumGoroutine(),
		heap:       ms.HeapAlloc,
		stack:      ms.StackInuse,
		inSyscall:  notInGo[0].Value.Uint64(),
		fds:        fds,
		sockets:    sockets,
	}
}

// openFDs counts the process's open file descriptors, and those of them
// that are sockets, from /proc/self/fd (0 and 0 where there is none).
func openFDs() (fds, sockets int) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, 0
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return 0, 0
	}
	for _, name := range names {
		target, err := os.Readlink("/proc/self/fd/" + name)
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fds++
		if strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}
