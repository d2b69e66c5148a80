//go:build unix

package client_test

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// startPipeVM starts the helper VM for launch l as a launcher does: with
// the read end of a lease pipe as its fd 3, named in vmre.LeaseFDKey. It
// returns the VM and the host's end of the pipe.
func startPipeVM(t *testing.T, engineAddr string, l *server.Launch) (*vmProcess, *os.File) {
	t.Helper()
	vmEnd, hostEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostEnd.Close() })
	vm := startVMWithFD3(t, vmEnd, engineAddr, l)
	return vm, hostEnd
}

// startVMWithFD3 starts the helper VM for launch l with fd3 as its fd 3,
// named in vmre.LeaseFDKey; it closes fd3, which the VM has its copy of.
func startVMWithFD3(t *testing.T, fd3 *os.File, engineAddr string, l *server.Launch) *vmProcess {
	t.Helper()
	vm := &vmProcess{exited: make(chan struct{})}
	vm.cmd = vmretest.Command("vm", "1")
	vm.cmd.Env = append(vm.cmd.Env, vmre.EngineAddressKey+"="+engineAddr, vmre.EngineTokenKey+"="+l.Token(),
		vmre.LeaseFDKey+"=3")
	vm.cmd.ExtraFiles = []*os.File{fd3}
	vm.cmd.Stderr = &vm.stderr
	err := vm.cmd.Start()
	fd3.Close()
	if err != nil {
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

// A VM given a lease pipe holds its lease there, not with the engine: it
// shuts down, exit 0, when the host writes its byte and closes the pipe
// (the host ended the lease), and when the pipe closes without it (the
// kernel closes a dead host's end).
func TestPipeLease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		end    bool // the host writes its byte before it closes
		reason string
	}{
		{"ended by the host", true, "the host ended the lease"},
		{"host gone", false, "lost the lease to the host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var leaseCalls atomic.Int32
			e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
			l := vmretest.NewLaunch(t, e, 1, func(c server.Call) {
				if c.Procedure == runtimev1connect.RuntimeServiceLeaseProcedure {
					leaseCalls.Add(1)
				}
			})
			vm, lease := startPipeVM(t, engineAddr, l)
			vm.waitHandshake(t, l)
			if tc.end {
				if _, err := lease.Write([]byte{'\n'}); err != nil {
					t.Fatal(err)
				}
			}
			lease.Close()
			if code := vm.exitCode(t); code != 0 {
				t.Fatalf("exit code %d; want 0; stderr:\n%s", code, vm.stderr.String())
			}
			if !strings.Contains(vm.stderr.String(), tc.reason) {
				t.Errorf("stderr does not say %q:\n%s", tc.reason, vm.stderr.String())
			}
			if n := leaseCalls.Load(); n != 0 {
				t.Errorf("the VM called Lease %d times; its lease is the pipe", n)
			}
		})
	}
}

// A variable that names a descriptor that is not a pipe (a file inherited
// from another process, say) is no lease: the VM holds its lease with the
// engine, as without one.
func TestPipeLeaseNotAPipe(t *testing.T) {
	t.Parallel()
	file, err := os.Create(t.TempDir() + "/not-a-pipe")
	if err != nil {
		t.Fatal(err)
	}
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	lw := newLeaseWatch()
	l := vmretest.NewLaunch(t, e, 1, lw.onCall)
	vm := startVMWithFD3(t, file, engineAddr, l)
	vm.waitHandshake(t, l)
	vm.waitLease(t, lw)
	l.End()
	if code := vm.exitCode(t); code != 0 {
		t.Fatalf("exit code %d; want 0; stderr:\n%s", code, vm.stderr.String())
	}
}
