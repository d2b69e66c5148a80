package launcher_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

// A host's death, or the end of a VM's children, is seen by whoever reaps
// the dead. The test binary runs as a "reaper": a child subreaper
// (PR_SET_CHILD_SUBREAPER) that starts a host process and becomes the
// parent of every process of the host's tree that loses its own: the VM
// when the host dies, a grandchild when the VM dies. It prints how each one
// ended, so a test knows the signal that ended a process it is not the
// parent of.
//
// Its stdout, which its host shares, carries "name=value" lines:
//
//	host=PID           the host started
//	vm=PID             the host launched its VM (also grandchild=PID, from the VM)
//	initialize=pending the host's engine holds the VM's Initialize (hostStallKey)
//	exit=...           how the VM ended, once the host has stopped it or it ended
//	reaped=PID STATUS  the reaper reaped PID: "exit=N" or "signal=SIGNAME"
//
// It reads commands on stdin: "kill" sends the host SIGKILL, "term" SIGTERM.
// It exits once it has no child left.

// Environment of the helper processes.
const (
	// reaperHostKey is the mode of the process a reaper starts.
	reaperHostKey = "VMRE_TEST_REAPER_HOST"
	// hostVMModeKey is the mode of the VM that a "host" process launches.
	hostVMModeKey = "VMRE_TEST_HOST_VM_MODE"
	// hostLegacyKey makes a "host" launch its VM in legacy mode.
	hostLegacyKey = "VMRE_TEST_HOST_LEGACY"
	// hostStallKey makes a "host" hold its VM's Initialize unanswered.
	hostStallKey = "VMRE_TEST_HOST_STALL"
)

func reaperProcess() int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "become a subreaper:", err)
		return 1
	}
	host := vmretest.Command(os.Getenv(reaperHostKey))
	host.Stdout, host.Stderr = os.Stdout, os.Stderr
	if err := host.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pid := host.Process.Pid
	fmt.Printf("host=%d\n", pid)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "kill":
				syscall.Kill(pid, syscall.SIGKILL)
			case "term":
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}()
	// The host is reaped here, not by host.Wait: whoever reaps it first
	// takes its status.
	for {
		var ws syscall.WaitStatus
		reaped, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ECHILD):
			return 0
		case err != nil:
			fmt.Fprintln(os.Stderr, "wait4:", err)
			return 1
		case ws.Signaled():
			fmt.Printf("reaped=%d signal=%s\n", reaped, unix.SignalName(ws.Signal()))
		default:
			fmt.Printf("reaped=%d exit=%d\n", reaped, ws.ExitStatus())
		}
	}
}

// hostProcess is a host built on the launcher: it launches one VM (in
// legacy mode with hostLegacyKey), prints "vm=PID", and stops the VM on
// SIGTERM; once the VM has ended, it prints "exit=..." and exits 0. With
// hostStallKey its engine holds the VM's Initialize unanswered, and it
// prints "vm=PID" as the VM starts.
func hostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	cfg := launcher.Config{
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Stdout:           os.Stdout,
		GracefulTimeout:  vmretest.WaitTimeout,
		HandshakeTimeout: vmretest.WaitTimeout,
		Legacy:           os.Getenv(hostLegacyKey) != "",
	}
	if os.Getenv(hostStallKey) != "" {
		addr, stop, err := stallingEngine(&cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stop()
		cfg.EngineAddr = addr
		cfg.Hooks = &launcher.Hooks{Started: func(i launcher.StartedInfo) { fmt.Printf("vm=%d\n", i.Pid) }}
	}
	l, err := launcher.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	rt, err := l.Launch(context.Background(), vmretest.Command(os.Getenv(hostVMModeKey)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("vm=%d\n", rt.Status().Pid)
	select {
	case <-term:
		rt.Stop(context.Background())
	case <-rt.Done():
	}
	<-rt.Done()
	exit, _ := rt.Exit()
	fmt.Printf("exit=code=%d signal=%s stage=%s\n", exit.Code, exit.Signal, exit.Stage)
	return 0
}

// stallingEngine serves an engine for cfg whose Initialize never answers:
// it prints "initialize=pending" when the call comes and holds it until
// the caller goes away.
func stallingEngine(cfg *launcher.Config) (addr string, stop func(), err error) {
	e, addr, stop, err := engineProcess(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == runtimev1connect.RuntimeServiceInitializeProcedure {
				fmt.Println("initialize=pending")
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	cfg.Engine = e
	return addr, stop, err
}

// engineProcess serves a new engine, its handler wrapped by wrap when
// wrap is not nil, on a loopback listener of a helper process; stop ends
// it. (vmretest.StartEngine does the same for a test.)
func engineProcess(wrap func(http.Handler) http.Handler) (e *server.Engine, addr string, stop func(), err error) {
	e = server.New(server.Config{})
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		return nil, "", nil, err
	}
	h := e.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, h) }()
	return e, ln.Addr().String(), func() { e.Close(); cancel(); <-served }, nil
}

// leaseHostProcess serves an engine and starts a VM on client.Serve with
// plain os/exec: no parent-death signal, no process group, nothing but the
// lease ties the VM to this process. It prints "vm=PID" once the VM holds
// its lease, and runs until SIGTERM.
func leaseHostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	e, addr, stop, err := engineProcess(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	leased := make(chan struct{})
	var once sync.Once
	launch, err := e.NewLaunch(server.LaunchConfig{
		Initializer: server.AcceptVersions("", vmre.ProtocolVersion),
		OnCall: func(c server.Call) {
			if c.Procedure == runtimev1connect.RuntimeServiceLeaseProcedure && c.Accepted() {
				once.Do(func() { close(leased) })
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vm := vmretest.Command("ok")
	vm.Env = append(vm.Env, vmre.EngineAddressKey+"="+addr, vmre.EngineTokenKey+"="+launch.Token())
	vm.Stderr = os.Stderr
	if err := vm.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The VM asks for its lease only after the handshake's answer has
	// reached it.
	select {
	case <-leased:
	case <-time.After(vmretest.WaitTimeout):
		fmt.Fprintln(os.Stderr, "the VM took no lease")
		vm.Process.Kill()
		vm.Wait()
		return 1
	}
	fmt.Printf("vm=%d\n", vm.Process.Pid)
	<-term
	launch.End() // ends the lease: the VM shuts down
	vm.Wait()
	return 0
}

// pipeHostProcess serves an engine and starts a VM on client.Serve with
// plain os/exec and a lease pipe, as the launcher gives one: no
// parent-death signal, no process group, nothing but the pipe ties the VM
// to this process. It prints "vm=PID" once the VM's handshake has been
// answered, and runs until SIGTERM.
func pipeHostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	e, addr, stop, err := engineProcess(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	launch, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", vmre.ProtocolVersion)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vmEnd, lease, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vm := vmretest.Command("ok")
	vm.Env = append(vm.Env, vmre.EngineAddressKey+"="+addr, vmre.EngineTokenKey+"="+launch.Token(),
		vmre.LeaseFDKey+"=3", vmReadyKey+"=1")
	vm.ExtraFiles = []*os.File{vmEnd}
	vm.Stderr = os.Stderr
	stdout, err := vm.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = vm.Start()
	vmEnd.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "ready=") {
	}
	fmt.Printf("vm=%d\n", vm.Process.Pid)
	<-term
	lease.Write([]byte{'\n'}) // ends the lease: the VM shuts down
	lease.Close()
	vm.Wait()
	return 0
}

// reaper is a running "reaper" process, seen from the test.
type reaper struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *lineLog

	mu   sync.Mutex
	pids []int // of the processes the test learned of, killed if left running
}

// startReaper runs a reaper over a host of mode hostMode, with env added
// to its environment (and so its host's). Cleanup kills every process of
// the tree that is left, and the reaper.
func startReaper(t *testing.T, hostMode string, env ...string) *reaper {
	t.Helper()
	r := &reaper{out: new(lineLog)}
	r.cmd = vmretest.Command("reaper")
	r.cmd.Env = append(append(r.cmd.Env, reaperHostKey+"="+hostMode), env...)
	stderr := new(vmretest.SyncBuffer)
	r.cmd.Stdout, r.cmd.Stderr = r.out, stderr
	r.cmd.WaitDelay = vmretest.WaitTimeout
	stdin, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdin = stdin
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	r.stdin = w
	t.Cleanup(func() {
		r.mu.Lock()
		for _, pid := range r.pids {
			if !vmretest.ProcessGone(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		r.mu.Unlock()
		r.cmd.Process.Kill()
		r.cmd.Wait()
		w.Close()
		if t.Failed() {
			t.Logf("reaper's stdout:\n%s\nstderr:\n%s", r.out, stderr)
		}
	})
	r.pid(t, "host")
	return r
}

// await returns the rest of the first line that starts with prefix.
func (r *reaper) await(t *testing.T, prefix string) string {
	t.Helper()
	return r.out.await(t, prefix)
}

// pid returns the pid of the line "name=PID".
func (r *reaper) pid(t *testing.T, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(r.await(t, name+"="))
	if err != nil {
		t.Fatalf("%s=: %v", name, err)
	}
	r.mu.Lock()
	r.pids = append(r.pids, pid)
	r.mu.Unlock()
	return pid
}

// send writes a command to the reaper.
func (r *reaper) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(r.stdin, cmd); err != nil {
		t.Fatal(err)
	}
}

// reaped waits until the reaper has reaped pid, and returns how it ended.
func (r *reaper) reaped(t *testing.T, pid int) string {
	t.Helper()
	return r.await(t, "reaped="+strconv.Itoa(pid)+" ")
}
