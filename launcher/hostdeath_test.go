package launcher_test

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// hostDeathBound is how soon a VM must be gone once its host is killed. A
// VM learns of its host's death at once (a signal, a broken socket, a
// broken pipe) and its graceful shutdown is bounded by its shutdown
// timeout (1 s for the test VMs); it is gone in milliseconds when the
// machine is idle. The bound is the claim, made generous for a loaded
// machine: a VM that missed its host's death would never go.
const hostDeathBound = 10 * time.Second

// TestVMDiesWithItsHost kills a real host process with SIGKILL, which it
// cannot catch, and checks how its VM, and the VM's child, end: a reaper
// process, the parent of whatever the host leaves, reports it.
func TestVMDiesWithItsHost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		host string   // the host process's mode
		env  []string // its settings
		// A VM that ignores SIGTERM is checked to do so before its host
		// dies: only the mechanism under test can end it then.
		ignoresSIGTERM bool
		grandchild     bool // the VM starts a child that ignores SIGTERM
		stalled        bool // the host dies during the handshake
		want           []string
	}{
		// A launcher host: the kernel's parent-death signal (SIGTERM) and
		// the lease both tell the VM, on client.Serve, which shuts down.
		// Once it finds its host gone, it ends its process group, itself
		// included (SIGKILL); the case "grandchild" proves that part.
		{name: "parent-death signal and lease", host: "host", env: []string{hostVMModeKey + "=ok"}, want: []string{"signal=SIGKILL", "exit=0"}},
		// A VM that skips the lease: the parent-death signal alone. It
		// comes as the host's thread that started the VM dies, which may be
		// before the VM is handed to another parent: the VM then shuts
		// down as if stopped, and exits 0 (docs/RELIABILITY.md, known
		// limits).
		{name: "parent-death signal alone", host: "host", env: []string{hostVMModeKey + "=nolease"}, want: []string{"signal=SIGKILL", "exit=0"}},
		// A VM started by plain os/exec: the lease alone. Its stream breaks
		// when the host's sockets close with it; the VM, which does not
		// lead a process group, shuts down and exits 0.
		{name: "lease alone", host: "host-lease", want: []string{"exit=0"}},
		// The same with the lease on a pipe, as the launcher gives it: the
		// kernel closes the host's end with it.
		{name: "lease pipe alone", host: "host-pipe", want: []string{"exit=0"}},
		// An rpcchainvm plugin that ignores SIGTERM, with no lease: legacy
		// VMs get SIGKILL as their parent-death signal.
		{name: "legacy parent-death SIGKILL", host: "host", env: []string{hostVMModeKey + "=legacy-stubborn", hostLegacyKey + "=1"},
			ignoresSIGTERM: true, want: []string{"signal=SIGKILL"}},
		// A Go VM that ignores SIGTERM and takes no lease, but logs: its
		// next line goes to a pipe nobody reads, and SIGPIPE ends it.
		{name: "SIGPIPE on the next log line", host: "host", env: []string{hostVMModeKey + "=ticker"},
			ignoresSIGTERM: true, want: []string{"signal=SIGPIPE"}},
		// A VM on client.Serve ends its process group once its host is
		// gone, so its child that ignores SIGTERM goes too.
		{name: "grandchild", host: "host", env: []string{hostVMModeKey + "=grandchild"},
			grandchild: true, want: []string{"signal=SIGKILL"}},
		// The host dies while the VM's Initialize is in flight: the call
		// fails, the VM finds it was handed to another parent, and ends
		// its group.
		{name: "during the handshake", host: "host", env: []string{hostVMModeKey + "=grandchild", hostStallKey + "=1"},
			grandchild: true, stalled: true, want: []string{"signal=SIGKILL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startReaper(t, tc.host, append(tc.env, vmReadyKey+"=1")...)
			var grandchild int
			if tc.grandchild {
				grandchild = r.pid(t, "grandchild")
				if !vmretest.SignalIgnored(grandchild, syscall.SIGTERM) {
					t.Fatalf("the grandchild %d does not ignore SIGTERM", grandchild)
				}
			}
			vm := r.pid(t, "vm")
			switch {
			case tc.stalled:
				r.await(t, "initialize=pending")
			case tc.host == "host":
				// The host's Launch returns once the engine has accepted the
				// handshake, maybe before its answer reached the VM.
				r.await(t, "ready=")
			}
			if tc.ignoresSIGTERM && !vmretest.SignalIgnored(vm, syscall.SIGTERM) {
				t.Fatalf("the VM %d does not ignore SIGTERM", vm)
			}
			if vmretest.ProcessGone(vm) {
				t.Fatalf("VM %d is not running before its host dies", vm)
			}

			start := time.Now()
			r.send(t, "kill")
			got := r.reaped(t, vm)
			gone := time.Since(start)
			t.Logf("the VM ended with %s %s after its host's SIGKILL", got, gone.Round(time.Millisecond))
			if !slices.Contains(tc.want, got) {
				t.Errorf("the VM ended with %s; want one of %q", got, tc.want)
			}
			if gone > hostDeathBound {
				t.Errorf("the VM was gone %s after its host's death; want within %s", gone, hostDeathBound)
			}
			if tc.grandchild {
				if got := r.reaped(t, grandchild); got != "signal=SIGKILL" {
					t.Errorf("the grandchild ended with %s; want the group's SIGKILL", got)
				}
			}
		})
	}
}
