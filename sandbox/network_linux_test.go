package sandbox_test

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// loopbackPort listens on a free loopback port until the test ends, and
// returns the port.
func loopbackPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// A VM connects to the engine and the ports its policy declares, and
// listens on an ephemeral port or a declared one: TCP to any other port is
// EACCES.
func TestNetwork(t *testing.T) {
	requireLandlock(t)
	declared, other := loopbackPort(t), loopbackPort(t)
	bind := loopbackPort(t)
	l := newLauncher(t, launcher.Config{}, "probe")
	// The VM handshakes with the engine: its port is granted.
	vm := launch(t, l, execCommand(os.Args[0]), sandbox.Policy{Network: sandbox.Network{
		Connect: []uint16{declared}, Bind: []uint16{bind}}}, dirs(t))
	addr := func(port uint16) string { return "127.0.0.1:" + strconv.Itoa(int(port)) }
	for _, tc := range []struct {
		what  string
		req   probeRequest
		errno syscall.Errno
	}{
		{"connect to a declared port", probeRequest{Op: "connect", Addr: addr(declared)}, 0},
		{"connect to another port", probeRequest{Op: "connect", Addr: addr(other)}, syscall.EACCES},
		{"listen on an ephemeral port", probeRequest{Op: "listen", Addr: "127.0.0.1:0"}, 0},
		{"listen on another port", probeRequest{Op: "listen", Addr: addr(other)}, syscall.EACCES},
		// The test holds the declared port: the sandbox lets the bind
		// through, and the kernel finds the port taken.
		{"listen on a declared port", probeRequest{Op: "listen", Addr: addr(bind)}, syscall.EADDRINUSE},
	} {
		if res := vm.probe(t, tc.req); res.Errno != int(tc.errno) {
			t.Errorf("%s: %+v, want errno %d (%v)", tc.what, res, int(tc.errno), tc.errno)
		}
	}
	if r, _ := vm.report.Rule("network"); !r.Applied {
		t.Errorf("report: network %+v", r)
	}
}
