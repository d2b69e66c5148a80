package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// vms are the test binary's lives as a VM (vmretest.Command, or the
// ModeKey variable of the launcher's Config.Env).
var vms = map[string]vmretest.Helper{
	// probe serves POST /probe: it tries what the request asks and says
	// what came of it, for a test to learn what the sandbox let it do.
	"probe": func([]string) int {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /probe", func(w http.ResponseWriter, r *http.Request) {
			var req probeRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(probe(req))
		})
		if err := client.Serve(context.Background(), mux, client.WithShutdownTimeout(time.Second)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	},
	// ptrace-refused-node is a node that may not ptrace (TestStartPtraceRefused).
	"ptrace-refused-node": ptraceRefusedNode,
	// euid prints its effective and real user ids: run setuid-root, it
	// tells whether the setuid bit gave it root.
	"euid": func([]string) int {
		fmt.Printf("euid=%d uid=%d\n", os.Geteuid(), os.Getuid())
		return 0
	},
}

// probeRequest is one thing for the probe VM to try.
type probeRequest struct {
	Op   string   `json:"op"` // read, write, mkdir, status, exec, fork, signal, raise-nofile, connect, listen
	Path string   `json:"path,omitempty"`
	Args []string `json:"args,omitempty"`
	N    int      `json:"n,omitempty"`
	Addr string   `json:"addr,omitempty"`
}

// probeResult is what came of it.
type probeResult struct {
	Errno  int               `json:"errno"` // 0: it worked
	Error  string            `json:"error,omitempty"`
	Output string            `json:"output,omitempty"`
	Count  int               `json:"count,omitempty"`
	Values map[string]string `json:"values,omitempty"`
}

func probe(req probeRequest) probeResult {
	var res probeResult
	var err error
	switch req.Op {
	case "read":
		_, err = os.ReadFile(req.Path)
	case "write":
		err = os.WriteFile(req.Path, []byte("written by the VM\n"), 0o600)
	case "mkdir":
		err = os.Mkdir(req.Path, 0o700)
	case "status":
		res.Values, err = status()
	case "exec":
		var out []byte
		cmd := exec.Command(req.Path, req.Args...)
		cmd.Env = append(os.Environ(), vmretest.ModeKey+"=euid")
		out, err = cmd.Output()
		res.Output = string(out)
	case "fork":
		res.Count, err = forkUntilRefused(req.N)
	case "signal":
		err = syscall.Kill(req.N, 0)
	case "raise-nofile":
		err = raiseOpenFiles(uint64(req.N))
	case "connect":
		var c net.Conn
		if c, err = net.DialTimeout("tcp", req.Addr, 5*time.Second); err == nil {
			c.Close()
		}
	case "listen":
		// A plain TCP socket: Go's net.Listen opens a Multipath TCP one
		// where the kernel allows, which Landlock does not restrict.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		var ln net.Listener
		if ln, err = lc.Listen(context.Background(), "tcp", req.Addr); err == nil {
			ln.Close()
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		res.Error = err.Error()
		res.Errno = -1
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	}
	return res
}

// status reports what the VM can see of its own sandbox.
func status() (map[string]string, error) {
	v := map[string]string{
		"euid":            fmt.Sprint(os.Geteuid()),
		vmre.DataDirKey:   os.Getenv(vmre.DataDirKey),
		"TMPDIR":          os.Getenv("TMPDIR"),
		"os.TempDir":      os.TempDir(),
		"VMRE_TEST_EXTRA": os.Getenv("VMRE_TEST_EXTRA"),
	}
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return v, err
	}
	for line := range strings.Lines(string(st)) {
		if val, ok := strings.CutPrefix(line, "NoNewPrivs:"); ok {
			v["NoNewPrivs"] = strings.TrimSpace(val)
		}
	}
	for name, res := range map[string]int{"nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "core": unix.RLIMIT_CORE,
		"as": unix.RLIMIT_AS, "data": unix.RLIMIT_DATA, "cpu": unix.RLIMIT_CPU} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(res, &rl); err != nil {
			return v, err
		}
		v[name] = fmt.Sprintf("%d/%d", rl.Cur, rl.Max)
	}
	return v, nil
}

// raiseOpenFiles raises the soft open-files limit to n, as rpcchainvm
// plugins do at start (avalanchego's ulimit.Set), failing where the hard
// limit is lower.
func raiseOpenFiles(n uint64) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if n > rl.Max {
		return fmt.Errorf("open files %d above the hard limit %d: %w", n, rl.Max, unix.EPERM)
	}
	rl.Cur = n
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
}

// forkUntilRefused starts sleeping children, up to n, until the kernel
// refuses one, then kills them all: it returns how many started.
func forkUntilRefused(n int) (int, error) {
	// The VM's threads count against its process limit too: once the
	// forks reach it, the Go runtime could not start a thread (it aborts
	// when pthread_create fails). Threads it started before wait idle in
	// its pool, and serve the system calls of the loop.
	idleThreads(8)
	var pids []int
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	}()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	attr := &syscall.ProcAttr{Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}}
	for len(pids) < n {
		pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "60"}, attr)
		if err != nil {
			return len(pids), err
		}
		pids = append(pids, pid)
	}
	return len(pids), nil
}

// idleThreads has the Go runtime start n threads and keep them, idle, for
// its goroutines to come: each is locked to a goroutine until all n run
// at once, then released.
func idleThreads(n int) {
	var running, done sync.WaitGroup
	release := make(chan struct{})
	running.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			running.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	running.Wait()
	close(release)
	done.Wait()
}
