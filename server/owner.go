package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/internal/sockowner"
)

// The reasons of an OwnerError: what did not match.
const (
	// ReasonCaller: the connection that called is not the launched
	// process's, nor one of its descendants' (a token read by another
	// process, such as a sibling VM reading /proc/PID/environ).
	ReasonCaller = "caller"
	// ReasonListener: the address announced reaches a listener that the
	// launched process and its descendants do not hold.
	ReasonListener = "listener"
	// ReasonNodeAddr: the address announced is one of the node's own: the
	// engine's listener, or one the host reserved (Engine.Reserve).
	ReasonNodeAddr = "node_address"
	// ReasonVMAddr: the address announced is the one another VM of the
	// engine announced and serves on.
	ReasonVMAddr = "vm_address"
)

// OwnerError is why the engine refused an Initialize as permission_denied:
// the call or the address it announced belongs to someone else than the
// VM launched for the token (docs/PROTOCOL.md, "The caller check").
// Call.Err unwraps to it, so that hooks and metrics count these refusals
// by Reason.
type OwnerError struct {
	// Reason is what did not match: ReasonCaller, ReasonListener,
	// ReasonNodeAddr or ReasonVMAddr.
	Reason string
	// Pid is the launched process, when known.
	Pid int
	// Peer is the address the call came from; Addr the one it announced.
	Peer, Addr string
	msg        string
}

func (e *OwnerError) Error() string { return e.msg }

// ownerRefusal is the Connect error of an OwnerError.
func ownerRefusal(reason string, pid int, peer, addr, format string, args ...any) error {
	return connect.NewError(connect.CodePermissionDenied, &OwnerError{Reason: reason, Pid: pid, Peer: peer, Addr: addr,
		msg: fmt.Sprintf(format, args...)})
}

// Reserve adds addresses ("host:port") that no VM may announce: the
// host's own listeners beyond the one a call comes in on (which is always
// refused), such as an admin or a TLS listener. An unspecified host
// (0.0.0.0:8080, [::]:8080) reserves its port on every address.
func (e *Engine) Reserve(addrs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reserved = append(e.reserved, addrs...)
}

// SetProcess names the process the host launched for this launch, whose
// tree alone may complete it when LaunchConfig.CheckCaller is set; an
// Initialize that came before waits for it. Only the first call counts.
// With the check, it opens the process's /proc directory of descriptors
// at once, while the process starts, rather than in its Initialize.
func (l *Launch) SetProcess(pid int) {
	var proc *sockowner.Proc
	if l.checkCaller {
		proc, _ = sockowner.OpenProc(pid) // without it, the check reads by pid
	}
	l.engine.mu.Lock()
	defer l.engine.mu.Unlock()
	if l.pid != 0 || l.state != statePending {
		proc.Close()
		return
	}
	l.pid, l.proc = pid, proc
	close(l.started)
}

// checkOwner refuses an Initialize of launch l from peer announcing addr
// when addr is the node's or another VM's, or when l checks its caller and
// the call or addr does not belong to the launched process's tree. A
// launch that is no longer pending is left to the check of its state
// (already_exists, not_found): the process of an ended launch may be gone,
// and its pid another process's.
func (e *Engine) checkOwner(ctx context.Context, l *Launch, peer, addr string) error {
	local := localAddr(ctx)
	e.mu.Lock()
	pending := l.state == statePending
	var err error
	if pending {
		err = e.addrTaken(l, local, peer, addr)
	}
	e.mu.Unlock()
	if err != nil || !pending || !l.checkCaller {
		return err
	}
	if ok, err := awaitProcess(ctx, l.started, l.ended); !ok {
		return err
	}
	e.mu.Lock()
	pid, proc, pending := l.pid, l.proc, l.state == statePending
	l.checking++ // End leaves proc open for this check
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if l.checking--; l.checking == 0 && l.state != statePending {
			l.proc.Close()
			l.proc = nil
		}
		e.mu.Unlock()
	}()
	if !pending {
		return nil
	}
	return checkCaller(&e.owners, sockowner.Query{Pid: pid, Proc: proc}, local, peer, addr)
}

// closeProc closes the launch's /proc directory, once no check reads it.
// It runs under engine.mu, when the launch leaves the pending state.
func (l *Launch) closeProc() {
	if l.checking == 0 {
		l.proc.Close()
		l.proc = nil
	}
}

// awaitProcess waits until the host has named the launched process
// (started closes), and reports whether the check goes on: not when the
// launch ended first (its state refuses the call), nor when ctx ended
// (err says so).
func awaitProcess(ctx context.Context, started, ended <-chan struct{}) (ok bool, err error) {
	select {
	case <-started:
		return true, nil
	case <-ended:
		return false, nil
	case <-ctx.Done():
		return false, connect.NewError(connect.CodeCanceled, context.Cause(ctx))
	}
}

// addrTaken refuses addr when it is the listener the call came in on, an
// address the host reserved, or the address of another launch that
// completed its handshake and has not ended than l (which may be nil: a
// remote VM's first session). It runs under e.mu.
func (e *Engine) addrTaken(l *Launch, local, peer, addr string) error {
	pid := 0
	if l != nil {
		pid = l.pid
	}
	if local != "" && sameEndpoint(addr, local) {
		return ownerRefusal(ReasonNodeAddr, pid, peer, addr,
			"addr %q is the address of the engine this call came to, not the VM's: announce the address of the VM's own listener", addr)
	}
	for _, r := range e.reserved {
		if sameEndpoint(addr, r) {
			return ownerRefusal(ReasonNodeAddr, pid, peer, addr,
				"addr %q is an address of the host's own (%s), not the VM's: announce the address of the VM's own listener", addr, r)
		}
	}
	for other := range e.serving {
		if other != l && sameEndpoint(addr, other.addr) {
			return ownerRefusal(ReasonVMAddr, pid, peer, addr,
				"addr %q is served by another VM of this host, which announced it first: announce the address of this VM's own listener", addr)
		}
	}
	return nil
}

// checkCaller refuses a call from peer to local, announcing addr, unless
// the connection and the listener at addr belong to the process pid or one
// of its descendants. Where sockets cannot be tied to processes, nothing
// is refused.
func checkCaller(c *sockowner.Checker, q sockowner.Query, local, peer, addr string) error {
	lap, lerr := netip.ParseAddrPort(local)
	pap, perr := netip.ParseAddrPort(peer)
	if lerr != nil || perr != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf(
			"the engine cannot tell which process called: the call's ends (%q, %q) are not TCP addresses; a host that serves the engine so turns the caller check off", local, peer))
	}
	q.Local, q.Remote, q.Listen = lap, pap, listenCandidates(addr)
	pid := q.Pid
	res, err := c.Check(q)
	if errors.Is(err, sockowner.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("the engine cannot tell which process called: %w", err))
	}
	switch {
	case !res.ConnFound:
		return ownerRefusal(ReasonCaller, pid, peer, addr,
			"this call comes from %s, which is no socket of this host: a VM calls the engine directly, not through a proxy", peer)
	case !res.ConnOwned:
		return ownerRefusal(ReasonCaller, pid, peer, addr,
			"this call comes from %s, a socket that neither the process launched for this token (pid %d) nor its descendants hold: a token belongs to its own VM, which alone may call with it", peer, pid)
	case res.ListenFound && !res.ListenOwned:
		return ownerRefusal(ReasonListener, pid, peer, addr,
			"addr %q reaches a listener that neither the launched process (pid %d) nor its descendants hold: announce the address of the VM's own listener", addr, pid)
	}
	return nil
}

// localAddr is the address of the engine's end of the call's connection,
// or "" when its server did not say.
func localAddr(ctx context.Context) string {
	if a, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
		return a.String()
	}
	return ""
}

// listenCandidates are the addresses a host that dials addr may reach.
func listenCandidates(addr string) []netip.AddrPort {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	if host == "localhost" {
		return []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)), netip.AddrPortFrom(netip.IPv6Loopback(), uint16(p))}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), uint16(p))}
}

// sameEndpoint reports whether a connection to a may reach what listens
// at b: the same port, and the same IP, or either one unspecified, or
// "localhost" and a loopback IP. Addresses that do not parse are compared
// as text.
func sameEndpoint(a, b string) bool {
	ha, pa, erra := net.SplitHostPort(a)
	hb, pb, errb := net.SplitHostPort(b)
	if erra != nil || errb != nil {
		return a == b
	}
	if pa != pb {
		return false
	}
	if ha == hb {
		return true
	}
	ipa, erra := netip.ParseAddr(ha)
	ipb, errb := netip.ParseAddr(hb)
	switch {
	case erra == nil && errb == nil:
		ipa, ipb = ipa.Unmap(), ipb.Unmap()
		return ipa == ipb || ipa.IsUnspecified() || ipb.IsUnspecified()
	case erra == nil && hb == "localhost":
		return ipa.Unmap().IsLoopback() || ipa.IsUnspecified()
	case errb == nil && ha == "localhost":
		return ipb.Unmap().IsLoopback() || ipb.IsUnspecified()
	}
	return false
}
