package sockowner_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vmre/vmre/internal/sockowner"
	"github.com/vmre/vmre/internal/vmretest"
)

func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{
		// dial ADDR [hole]: listen on 127.0.0.1:0, dial ADDR, send the
		// listener's address on the connection, then hold both until stdin
		// closes. With hole, descriptors opened before the sockets are
		// closed after them, which leaves the sockets above a gap.
		"dial": func(args []string) int {
			var fillers []*os.File
			for range len(args) * 8 {
				f, err := os.Open(os.DevNull)
				if err != nil {
					return 1
				}
				fillers = append(fillers, f)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			c, err := net.Dial("tcp", args[0])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for _, f := range fillers {
				f.Close()
			}
			fmt.Fprintln(c, ln.Addr())
			io.Copy(io.Discard, os.Stdin)
			return 0
		},
		// parent ADDR: run "dial ADDR" as a child, passing stdin on.
		"parent": func(args []string) int {
			cmd := vmretest.Command("dial", args...)
			cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
			if err := cmd.Run(); err != nil {
				return 1
			}
			return 0
		},
	})
}

// checker is a Checker closed when the test ends.
func checker(t testing.TB) *sockowner.Checker {
	c := new(sockowner.Checker)
	t.Cleanup(c.Close)
	return c
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// server listens on network's loopback and returns the listener.
func server(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestOwnSockets: this process holds the client end of a connection it made
// and the listener it opened, over IPv4 and IPv6, and a listener on the
// unspecified address counts for a loopback address of its port.
func TestOwnSockets(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}, {"tcp", ":0"}} {
		t.Run(tc.addr, func(t *testing.T) {
			ln := server(t, tc.network, tc.addr)
			dial := ln.Addr().String()
			if tc.addr == ":0" {
				dial = fmt.Sprintf("127.0.0.1:%d", addrPort(t, ln.Addr()).Port())
			}
			c, err := net.Dial("tcp", dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			q := sockowner.Query{Pid: os.Getpid(), Local: addrPort(t, sc.LocalAddr()), Remote: addrPort(t, sc.RemoteAddr()),
				Listen: []netip.AddrPort{addrPort(t, c.RemoteAddr())}}
			res, err := checker(t).Check(q)
			if err != nil {
				t.Fatal(err)
			}
			if res != (sockowner.Result{ConnFound: true, ConnOwned: true, ListenFound: true, ListenOwned: true}) {
				t.Errorf("Check(%+v) = %+v; want all found and owned", q, res)
			}
		})
	}
}

// startDialer runs mode (dial, or parent of dial) against ln and returns
// the accepted connection, the helper's listener address, and the pid of
// the process it started.
func startDialer(t *testing.T, ln net.Listener, mode string, args ...string) (net.Conn, netip.AddrPort, int) {
	t.Helper()
	cmd := vmretest.Command(mode, append([]string{ln.Addr().String()}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	listen, err := netip.ParseAddrPort(line[:len(line)-1])
	if err != nil {
		t.Fatal(err)
	}
	return c, listen, cmd.Process.Pid
}

// TestOtherProcesses: a child's sockets belong to it and not to a
// sibling; a grandchild's belong to its parent's tree.
func TestOtherProcesses(t *testing.T) {
	ln := server(t, "tcp4", "127.0.0.1:0")
	for _, mode := range []string{"dial", "parent"} {
		t.Run(mode, func(t *testing.T) {
			c, listen, pid := startDialer(t, ln, mode)
			q := sockowner.Query{Local: addrPort(t, c.LocalAddr()), Remote: addrPort(t, c.RemoteAddr()), Listen: []netip.AddrPort{listen}}
			q.Pid = pid
			if res, err := checker(t).Check(q); err != nil || res != (sockowner.Result{ConnFound: true, ConnOwned: true, ListenFound: true, ListenOwned: true}) {
				t.Errorf("for the helper's tree: %+v, %v; want all found and owned", res, err)
			}
			_, _, sibling := startDialer(t, ln, "dial")
			q.Pid = sibling
			if res, err := checker(t).Check(q); err != nil || res != (sockowner.Result{ConnFound: true, ListenFound: true}) {
				t.Errorf("for a sibling's tree: %+v, %v; want found and not owned", res, err)
			}
		})
	}
}

// TestDescriptorsAboveAGap: sockets that sit above descriptors the
// process closed are found too, and so through a Proc opened before the
// process made them; once the process is gone, its Proc finds nothing.
func TestDescriptorsAboveAGap(t *testing.T) {
	ln := server(t, "tcp4", "127.0.0.1:0")
	cmd := vmretest.Command("dial", ln.Addr().String(), "hole")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	proc, err := sockowner.OpenProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	q := sockowner.Query{Proc: proc, Local: addrPort(t, c.LocalAddr()), Remote: addrPort(t, c.RemoteAddr()),
		Listen: []netip.AddrPort{netip.MustParseAddrPort(line[:len(line)-1])}}
	owners := checker(t)
	if res, err := owners.Check(q); err != nil || !res.ConnOwned || !res.ListenOwned {
		t.Errorf("Check through a Proc: %+v, %v; want both owned", res, err)
	}
	q.Pid, q.Proc = cmd.Process.Pid, nil
	if res, err := owners.Check(q); err != nil || !res.ConnOwned || !res.ListenOwned {
		t.Errorf("Check by pid: %+v, %v; want both owned", res, err)
	}
	stdin.Close()
	cmd.Wait()
	q.Proc = proc
	if res, err := owners.Check(q); err != nil || res.ConnOwned || res.ListenOwned {
		t.Errorf("Check through the Proc of a process gone: %+v, %v; want nothing owned", res, err)
	}
}

// TestNothingThere: an address nobody listens on, and a connection that
// does not exist, are not found.
func TestNothingThere(t *testing.T) {
	ln := server(t, "tcp4", "127.0.0.1:0")
	free := addrPort(t, ln.Addr())
	ln.Close()
	res, err := checker(t).Check(sockowner.Query{Pid: os.Getpid(), Local: free, Remote: netip.MustParseAddrPort("127.0.0.1:1"),
		Listen: []netip.AddrPort{free}})
	if err != nil || res != (sockowner.Result{}) {
		t.Errorf("Check of nothing = %+v, %v; want nothing found", res, err)
	}
}

// BenchmarkCheck is the cost of the check of a Go VM that holds both
// sockets itself, as the engine makes it at each Initialize.
func BenchmarkCheck(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	q := sockowner.Query{Pid: os.Getpid(), Local: netip.MustParseAddrPort(sc.LocalAddr().String()),
		Remote: netip.MustParseAddrPort(sc.RemoteAddr().String()), Listen: []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}}
	owners := checker(b)
	for b.Loop() {
		if res, err := owners.Check(q); err != nil || !res.ConnOwned || !res.ListenOwned {
			b.Fatal(res, err)
		}
	}
}
