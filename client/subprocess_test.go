package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// vmProcess is the test binary re-run as a VM plugin built on client.Serve.
type vmProcess struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer  // read only once exited is closed
	exited chan struct{} // closed when the process has been reaped
	err    error         // Wait's error, valid once exited is closed
}

// startVM runs the helper VM announcing protocol version version, with env
// added to an environment cleaned of the host's variables. Cleanup kills
// the VM if a test left it running, and reaps it.
func startVM(t *testing.T, version uint, env ...string) *vmProcess {
	t.Helper()
	return startCommand(t, vmretest.Command("vm", strconv.FormatUint(uint64(version), 10)), env...)
}

// startCommand starts cmd, a helper of the test binary, with env added to
// its environment.
func startCommand(t *testing.T, cmd *exec.Cmd, env ...string) *vmProcess {
	t.Helper()
	vm := &vmProcess{cmd: cmd, exited: make(chan struct{})}
	vm.cmd.Env = append(vm.cmd.Env, env...)
	vm.cmd.Stderr = &vm.stderr
	if err := vm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(vm.exited)
		vm.err = vm.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-vm.exited:
		default:
			vm.cmd.Process.Kill()
			<-vm.exited
		}
	})
	return vm
}

// launchVM starts the helper VM for launch l of the engine at engineAddr.
func launchVM(t *testing.T, engineAddr string, l *server.Launch, version uint) *vmProcess {
	t.Helper()
	return startVM(t, version, vmre.EngineAddressKey+"="+engineAddr, vmre.EngineTokenKey+"="+l.Token())
}

// waitHandshake waits until l is initialized, failing at once if the VM
// exits first.
func (vm *vmProcess) waitHandshake(t *testing.T, l *server.Launch) {
	t.Helper()
	select {
	case <-l.Initialized():
	case <-vm.exited:
		t.Fatalf("the VM exited (%v) before its handshake; stderr:\n%s", vm.err, vm.stderr.String())
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("no handshake within %v", vmretest.WaitTimeout)
	}
}

// waitLease waits until the engine has granted the VM its lease.
func (vm *vmProcess) waitLease(t *testing.T, lw *leaseWatch) {
	t.Helper()
	select {
	case <-lw.granted:
	case <-vm.exited:
		t.Fatalf("the VM exited (%v) before taking its lease; stderr:\n%s", vm.err, vm.stderr.String())
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("the VM took no lease within %v", vmretest.WaitTimeout)
	}
}

// exitCode waits for the VM to exit and returns its exit code; it fails the
// test if the VM was killed by a signal.
func (vm *vmProcess) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-vm.exited:
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("the VM did not exit within %v", vmretest.WaitTimeout)
	}
	var exitErr *exec.ExitError
	if vm.err != nil && !errors.As(vm.err, &exitErr) {
		t.Fatalf("wait for the VM: %v", vm.err)
	}
	code := vm.cmd.ProcessState.ExitCode()
	if code < 0 {
		t.Fatalf("the VM ended with %v; want an exit; stderr:\n%s", vm.cmd.ProcessState, vm.stderr.String())
	}
	return code
}

// TestSubprocessServe runs a VM's whole life in a real process: the
// handshake, a call to the server the VM reported, SIGTERM, exit 0.
func TestSubprocessServe(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	lw := newLeaseWatch()
	l := vmretest.NewLaunch(t, e, 1, lw.onCall)
	vm := launchVM(t, engineAddr, l, 1)
	vm.waitHandshake(t, l)
	// The VM asks for its lease once the handshake's response has reached
	// it; a SIGTERM before that would interrupt the handshake itself.
	vm.waitLease(t, lw)

	addr, version := l.Result()
	if version != 1 {
		t.Errorf("the VM announced version %d; want 1", version)
	}

	// The VM serves plain HTTP/1.1...
	hc := &http.Client{}
	t.Cleanup(hc.CloseIdleConnections)
	res, err := hc.Get("http://" + addr + helloPath)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("hello from pid %d over HTTP/1.1\n", vm.cmd.Process.Pid); res.StatusCode != 200 || string(body) != want {
		t.Errorf("GET %s: %s %q; want 200 %q", helloPath, res.Status, body, want)
	}

	// ...and gRPC over h2c, here to a grpc-go health client.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hres, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hres.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("VM health %v; want SERVING", hres.GetStatus())
	}
	conn.Close()

	if err := vm.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := vm.exitCode(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; want 0; stderr:\n%s", code, vm.stderr.String())
	}
}

// TestSubprocessLeaseEnds proves the VM shuts down by itself, exit 0, when
// the host ends its lease: by ending the launch or closing the engine. The
// test sends no signal and the VM holds its lease until then: only the
// lease's end can make it exit.
func TestSubprocessLeaseEnds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		end  func(*server.Engine, *server.Launch)
	}{
		{"Launch.End", func(_ *server.Engine, l *server.Launch) { l.End() }},
		{"Engine.Close", func(e *server.Engine, _ *server.Launch) { e.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
			lw := newLeaseWatch()
			l := vmretest.NewLaunch(t, e, 1, lw.onCall)
			vm := launchVM(t, engineAddr, l, 1)
			vm.waitHandshake(t, l)
			vm.waitLease(t, lw)

			tc.end(e, l)
			if code := vm.exitCode(t); code != 0 {
				t.Fatalf("exit code %d; want 0; stderr:\n%s", code, vm.stderr.String())
			}
		})
	}
}

// TestSubprocessNotPlugin starts the VM by hand, without the host's variables:
// it must say how to run it and exit 1. What it says on stderr is the
// subject.
func TestSubprocessNotPlugin(t *testing.T) {
	t.Parallel()
	vm := startVM(t, 1)
	if code := vm.exitCode(t); code != 1 {
		t.Errorf("exit code %d; want 1", code)
	}
	stderr := vm.stderr.String()
	if !strings.Contains(stderr, client.ErrNotPlugin.Error()) || !strings.Contains(stderr, "vmre serve") {
		t.Errorf("stderr does not carry ErrNotPlugin's text, which mentions `vmre serve`:\n%s", stderr)
	}
}

// TestSubprocessVersionMismatch runs a VM built for a newer protocol: it must
// exit 1 with the mismatch on stderr (the message is the subject), and the
// launch stays pending.
func TestSubprocessVersionMismatch(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	vm := launchVM(t, engineAddr, l, 2)
	if code := vm.exitCode(t); code != 1 {
		t.Errorf("exit code %d; want 1", code)
	}
	stderr := vm.stderr.String()
	if want := "handshake failed: protocol version mismatch vmre: 1 vm: 2"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	select {
	case <-l.Initialized():
		t.Error("a refused VM completed the handshake")
	default:
	}
}
