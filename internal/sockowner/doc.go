// Package sockowner tells whether a TCP socket belongs to a process or to
// one of its descendants: the engine's check that the connection calling
// Initialize, and the listener it announces, belong to the VM launched for
// the call's token (docs/PROTOCOL.md, "The caller check").
//
// On Linux it finds the sockets with sock_diag (NETLINK_SOCK_DIAG), by
// exact lookups: the caller's socket by the connection's four-tuple, and
// the listener that a connection to an address reaches, as the kernel
// finds it for an incoming connection (one bound to the address, or to the
// unspecified address of its port). It then reads the descriptors of the process and of its
// descendants in /proc (/proc/PID/fd, and /proc/PID/task/TID/children for
// the tree) until it has found each socket's inode. It needs no privilege
// beyond reading /proc/PID/fd, which a process of the same user, or root,
// may do. Elsewhere Check returns ErrUnsupported.
package sockowner

import (
	"errors"
	"net/netip"
	"sync"
)

// Errors of Check.
var (
	// ErrUnsupported: sockets cannot be tied to processes on this system.
	ErrUnsupported = errors.New("finding the process of a socket is not supported on this system")
	// ErrClosed: the Checker is closed.
	ErrClosed = errors.New("sockowner: checker closed")
)

// Checker answers Queries. It holds one netlink socket, opened at its
// first Check, for every Check until Release or Close: an engine's Checker
// costs it one descriptor while launches wait for their handshake. Its
// zero value is ready; it is safe for concurrent use (one Check at a
// time).
type Checker struct {
	mu     sync.Mutex
	d      *diag // nil until the first Check, and elsewhere than on Linux
	closed bool
}

// Query is what Check looks for.
type Query struct {
	// Pid is the process whose tree must hold the sockets.
	Pid int
	// Proc, when set, is the process's descriptors' directory, opened
	// ahead (OpenProc); it stands for Pid.
	Proc *Proc
	// Local and Remote are the two ends of a TCP connection as its server
	// sees it: Remote is the caller's end, whose socket Check looks for.
	Local, Remote netip.AddrPort
	// Listen are the addresses at which a listener of the tree must be
	// reached (the address the VM announced; both loopback addresses for
	// "localhost"): for each, the listener a connection to it reaches is
	// looked up. None: no listener is looked for.
	Listen []netip.AddrPort
}

// Result is what Check found.
type Result struct {
	// ConnFound tells whether the caller's socket was found on this host;
	// ConnOwned, whether the tree holds it.
	ConnFound, ConnOwned bool
	// ListenFound tells whether a connection to one of Listen reaches a
	// listener; ListenOwned, whether the tree holds one of those.
	ListenFound, ListenOwned bool
}
