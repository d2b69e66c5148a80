package launcher_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

// Environment of the "host" and "host-lease" processes.
const (
	// hostVMModeKey is the mode of the VM that a "host" process launches.
	hostVMModeKey = "VMRE_TEST_HOST_VM_MODE"
	// vmLogKey is the file a "host-lease" process sends its VM's stderr to,
	// so that the test can read it after the host is gone.
	vmLogKey = "VMRE_TEST_VM_LOG"
)

// hostProcess is a host built on the launcher: it launches one VM, prints
// "vm=PID" on stdout, and runs until SIGTERM. Its VM gets the parent-death
// signal and, on client.Serve, a lease.
func hostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	l, err := launcher.New(launcher.Config{Logger: logger, GracefulTimeout: time.Second, Stdout: os.Stdout})
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
	<-term
	rt.Stop(context.Background())
	<-rt.Done()
	return 0
}

// leaseHostProcess serves an engine and starts a VM on client.Serve with
// plain os/exec: no parent-death signal, no process group, nothing but the
// lease ties the VM to this process. It prints "vm=PID" once the VM holds
// its lease, and runs until SIGTERM.
func leaseHostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	e := server.New(server.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, e.Handler()) }()
	defer func() {
		e.Close()
		cancel()
		<-served
	}()
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
	vmLog, err := os.OpenFile(os.Getenv(vmLogKey), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer vmLog.Close()
	vm := vmretest.Command("ok")
	vm.Env = append(vm.Env, vmre.EngineAddressKey+"="+ln.Addr().String(), vmre.EngineTokenKey+"="+launch.Token())
	vm.Stderr = vmLog
	if err := vm.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The VM asks for its lease only after the handshake's answer has
	// reached it.
	select {
	case <-leased:
	case <-time.After(10 * time.Second):
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

// TestVMDiesWithItsHost kills a real host process with SIGKILL, which it
// cannot catch, and checks that its VM does not outlive it.
func TestVMDiesWithItsHost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		host     string // the host process's mode
		vm       string // the VM's mode
		within   time.Duration
		vmLogHas string // for a VM whose stderr goes to a file
	}{
		// A launcher host: the kernel's parent-death signal (SIGTERM) and
		// the lease both end the VM.
		{name: "parent-death signal and lease", host: "host", vm: "ok", within: 10 * time.Second},
		// A VM that skips the lease: the parent-death signal alone.
		{name: "parent-death signal alone", host: "host", vm: "nolease", within: 10 * time.Second},
		// A VM started by plain os/exec: the lease alone. Its stream breaks
		// when the host's sockets close with it.
		{name: "lease alone", host: "host-lease", vm: "ok", within: 5 * time.Second, vmLogHas: "lost the lease"},
		// The same with the lease on a pipe, as the launcher gives it: the
		// kernel closes the host's end with it.
		{name: "lease pipe alone", host: "host-pipe", vm: "ok", within: 5 * time.Second, vmLogHas: "lost the lease"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vmLog := t.TempDir() + "/vm.log"
			host, vmPid, _ := startHost(t, tc.host, hostVMModeKey+"="+tc.vm, vmLogKey+"="+vmLog)
			if vmretest.ProcessGone(vmPid) {
				t.Fatalf("VM %d is not running before its host dies", vmPid)
			}

			start := time.Now()
			if err := host.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			host.Wait()
			if !eventually(tc.within, func() bool { return vmretest.ProcessGone(vmPid) }) {
				t.Fatalf("VM %d still runs %s after its host was killed", vmPid, tc.within)
			}
			t.Logf("the VM was gone %s after its host's SIGKILL", time.Since(start).Round(time.Millisecond))

			if tc.vmLogHas != "" {
				b, err := os.ReadFile(vmLog)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(b, []byte(tc.vmLogHas)) {
					t.Errorf("the VM's log lacks %q:\n%s", tc.vmLogHas, b)
				}
			}
		})
	}
}

// startHost runs the test binary as a host process in mode, and returns it
// with the pid of its VM and the lines of its stdout (where a "host" also
// copies its VM's stdout). Cleanup kills both if the test left them running.
func startHost(t *testing.T, mode string, env ...string) (*exec.Cmd, int, *lineLog) {
	t.Helper()
	host := vmretest.Command(mode)
	host.Env = append(host.Env, env...)
	stderr := new(vmretest.SyncBuffer)
	host.Stderr = stderr
	stdout, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	var vmPid int
	t.Cleanup(func() {
		host.Process.Kill()
		host.Wait()
		if vmPid != 0 && !vmretest.ProcessGone(vmPid) {
			syscall.Kill(vmPid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("host stderr:\n%s", stderr.String())
		}
	})
	out := new(lineLog)
	go io.Copy(out, stdout) // ends when the host does
	pid, err := strconv.Atoi(out.await(t, "vm=", 20*time.Second))
	if err != nil {
		t.Fatalf("host printed vm=%v; want vm=PID", err)
	}
	vmPid = pid
	return host, pid, out
}

// TestGrandchildDiesWithKilledHost: when the host is killed with SIGKILL,
// nothing on the host's side can signal the VM's process group any more.
// The VM, on client.Serve, learns of its host's death (the lease breaks, it
// is handed to another parent) and kills its own group, so a child of the
// VM that ignores SIGTERM goes too.
func TestGrandchildDiesWithKilledHost(t *testing.T) {
	t.Parallel()
	host, vmPid, out := startHost(t, "host", hostVMModeKey+"=grandchild")
	grandchild := awaitGrandchild(t, out)
	host.Process.Signal(syscall.SIGKILL)
	host.Wait()
	if !eventually(10*time.Second, func() bool { return vmretest.ProcessGone(vmPid) }) {
		t.Fatalf("VM %d outlived its host", vmPid)
	}
	if !eventually(2*time.Second, func() bool { return vmretest.ProcessGone(grandchild) }) {
		t.Errorf("grandchild %d outlived the VM's host", grandchild)
	}
}
