package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
)

// MinTokenLen is the shortest token an Enrollment takes: 128 bits in hex.
const MinTokenLen = 32

// DefaultLeaseWait is how long a session that Initialize accepted holds
// its enrollment before it takes its lease (EnrollConfig.LeaseWait): a VM
// asks for its lease right after its handshake.
const DefaultLeaseWait = 10 * time.Second

// EnrollConfig configures an Enrollment.
type EnrollConfig struct {
	// Name names the VM in events.
	Name string
	// Token is the enrollment's bearer token (at least MinTokenLen
	// characters; NewToken makes one). It lives until Rotate.
	Token string
	// Initializer decides whether a session's protocol version is
	// acceptable (required; see AcceptVersions).
	Initializer vmre.Initializer
	// OnCall is told of every call made with the enrollment's token.
	OnCall func(Call)
	// OnSession is told when a session's lease begins and ends, on the
	// goroutine that serves the lease, one call at a time. A session's end
	// is told after its beginning; the end of a session that a newer one
	// has already replaced is not told (the VM runs as the newer one). It
	// must not block.
	OnSession func(SessionEvent)
	// KeepAlive is the interval of the empty messages the engine sends on
	// the VM's lease (default: the engine's LeaseKeepAlive). A node sets it
	// to its ping: a VM that hears nothing for twice as long knows its
	// link is cut, and with ServeTLS the engine notices a cut link within
	// the pings' time on HTTP/1.1 too.
	KeepAlive time.Duration
	// LeaseWait is how long a session that Initialize accepted holds the
	// enrollment before it takes its lease (default DefaultLeaseWait):
	// until then, and then while its lease holds, a second Initialize
	// with the token is refused.
	LeaseWait time.Duration
}

// SessionEvent is the beginning or the end of an Enrollment's session.
type SessionEvent struct {
	// Name is the enrollment's name.
	Name string
	// Up is true when the VM took its lease (it runs), false when the
	// lease ended.
	Up bool
	// Peer is the address the VM's handshake came from.
	Peer string
	// Addr, CertSHA256 and ProtocolVersion are what the session's
	// Initialize announced: those of the process that holds the lease.
	Addr            string
	CertSHA256      string
	ProtocolVersion uint
	// CertSPKI is the SHA-256 of the public key of the certificate the VM
	// sent, in base64 (tlspin.PublicKeyPin), or "" when it sent none.
	CertSPKI string
	// Cause says why the lease ended; Err says it in a sentence, wrapping
	// ErrSessionEnded when the node ended it. Zero and nil while Up.
	Cause EndCause
	Err   error
	// Duration is how long the lease was held, when it ended.
	Duration time.Duration
}

// ErrSessionEnded is the cause of a session that the node ended: an
// operator stopped or restarted the VM, rotated its token, or removed it,
// or the node shut down.
var ErrSessionEnded = errors.New("the node ended the session")

// Enrollment is a VM that the node does not start: it runs on another host
// under an orchestrator of its own, and handshakes with a long-lived token,
// again after each restart. Each handshake opens a session (a Launch of
// the enrollment); its lease is the VM's liveness. One session holds the
// enrollment at a time: from the Initialize that opens it until its lease
// ends (or, when it never takes its lease, for LeaseWait). An Initialize
// with the token meanwhile is refused (already_exists) before it is
// accepted, so that what the node publishes (the address and certificate
// of the session's Initialize) is always the process that holds the
// lease. Its methods are safe for concurrent use.
type Enrollment struct {
	engine *Engine
	cfg    EnrollConfig
	now    func() time.Time

	// Guarded by engine.mu.
	token    string
	key      tokenKey
	admitted bool
	closed   bool
	shutdown bool
	session  *Launch // the current or last session, or nil

	notify sync.Mutex // one OnSession at a time
	up     *Launch    // the session whose beginning was told last; guarded by notify
}

// NewToken returns a fresh 256-bit token, hex-encoded, for an Enrollment.
func NewToken() string { return newToken() }

// Enroll registers a VM of another host under cfg.Token.
func (e *Engine) Enroll(cfg EnrollConfig) (*Enrollment, error) {
	switch {
	case cfg.Initializer == nil:
		return nil, fmt.Errorf("%w: Enroll needs an Initializer (see AcceptVersions)", vmre.ErrInvalidConfig)
	case len(cfg.Token) < MinTokenLen:
		return nil, fmt.Errorf("%w: an enrollment's token has %d characters; want %d or more (NewToken)", vmre.ErrInvalidConfig, len(cfg.Token), MinTokenLen)
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = DefaultLeaseWait
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = e.keepAlive
	}
	en := &Enrollment{engine: e, cfg: cfg, now: time.Now, token: cfg.Token, key: keyOf(cfg.Token), admitted: true}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrEngineClosed
	}
	if _, taken := e.enrollments[en.key]; taken {
		return nil, fmt.Errorf("%w: another enrollment has this token", vmre.ErrInvalidConfig)
	}
	e.enrollments[en.key] = en
	return en, nil
}

// lookupEnrollment finds the enrollment of a token, comparing it in
// constant time.
func (e *Engine) lookupEnrollment(token string) *Enrollment {
	if token == "" {
		return nil
	}
	e.mu.Lock()
	en := e.enrollments[keyOf(token)]
	var want string
	if en != nil {
		want = en.token
	}
	e.mu.Unlock()
	if en == nil || subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return nil
	}
	return en
}

// Token is the enrollment's current token.
func (en *Enrollment) Token() string {
	en.engine.mu.Lock()
	defer en.engine.mu.Unlock()
	return en.token
}

// Rotate replaces the enrollment's token: the old one is refused
// (unauthenticated) from then on, and the session it opened ends
// (EndTokenRotated: the VM's lease ends with aborted, for its orchestrator
// to start it again with the new token).
func (en *Enrollment) Rotate(token string) error {
	if len(token) < MinTokenLen {
		return fmt.Errorf("%w: a token of %d characters; want %d or more", vmre.ErrInvalidConfig, len(token), MinTokenLen)
	}
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.closed {
		return ErrEngineClosed
	}
	delete(e.enrollments, en.key)
	en.token, en.key = token, keyOf(token)
	e.enrollments[en.key] = en
	en.endLocked(EndTokenRotated)
	return nil
}

// Admit sets whether the VM may handshake: false ends its session
// (EndOperatorStop: its lease ends cleanly, so it shuts down and exits 0)
// and refuses its handshakes with failed_precondition until Admit(true).
func (en *Enrollment) Admit(ok bool) {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	en.admitted = ok
	if !ok {
		en.endLocked(EndOperatorStop)
	}
}

// EndSession ends the current session (EndOperatorRestart): the VM's
// lease ends with aborted, it exits for its orchestrator to start it
// again, and it handshakes anew.
func (en *Enrollment) EndSession() {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	en.endLocked(EndOperatorRestart)
}

// Shutdown ends the current session because the node shuts down
// (EndNodeShutdown: the VM's lease ends with aborted, for its orchestrator
// to start it again once the node is back), and refuses handshakes with
// unavailable from then on.
func (en *Enrollment) Shutdown() {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	en.shutdown = true
	en.endLocked(EndNodeShutdown)
}

// Close removes the enrollment: its token is refused from then on and its
// session ends (EndRemoved: its lease ends cleanly).
func (en *Enrollment) Close() {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.closed {
		return
	}
	en.closed = true
	delete(e.enrollments, en.key)
	en.endLocked(EndRemoved)
}

// endLocked ends the current session for cause. Called with engine.mu held.
func (en *Enrollment) endLocked(cause EndCause) {
	if en.session != nil {
		en.session.endSession(cause)
	}
}

// admission refuses a handshake of an enrollment that was removed, whose
// VM the operator stopped, or whose node shuts down. Called with
// engine.mu held.
func (en *Enrollment) admission() error {
	switch {
	case en.closed:
		return connect.NewError(connect.CodeUnauthenticated, errors.New("unknown token: this enrollment was removed"))
	case en.shutdown:
		return connect.NewError(connect.CodeUnavailable, errors.New("the node is shutting down: start the VM again once it is back"))
	case !en.admitted:
		return connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("the node's operator stopped VM %q: it is not admitted until it is started again on the node", en.cfg.Name))
	}
	return nil
}

// holds reports whether the session l holds the enrollment: it took its
// lease and the lease holds, or it has yet to take it within LeaseWait.
// Called with engine.mu held.
func (en *Enrollment) holds(l *Launch) bool {
	return l != nil && l.state != stateEnded && (l.leased || en.now().Sub(l.accepted) < en.cfg.LeaseWait)
}

// initialize checks an Initialize with the enrollment's token and, when
// no session holds the enrollment, opens a session: the checks of a
// launch's Initialize, then, atomically, the refusal of a second process
// (already_exists) or the new session. A session that never took its
// lease within LeaseWait, or whose lease ended, is replaced.
func (en *Enrollment) initialize(ctx context.Context, req *connect.Request[runtimev1.InitializeRequest]) (*connect.Response[runtimev1.InitializeResponse], error) {
	e := en.engine
	e.mu.Lock()
	err := en.admission()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	addr, version := req.Msg.GetAddr(), uint(req.Msg.GetProtocolVersion())
	if err := checkAddr(addr, true); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	cert, err := checkCertificate(req.Msg.GetCertSha256(), req.Msg.GetCertificate())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	// The node's own addresses and other VMs' are refused to a remote VM
	// too; its own previous session's is its own. It runs elsewhere: its
	// caller is not checked (docs/PROTOCOL.md, "The caller check").
	local := localAddr(ctx)
	e.mu.Lock()
	err = e.addrTaken(en.session, local, req.Peer().Addr, addr)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := en.cfg.Initializer.Initialize(ctx, version, addr); err != nil {
		return nil, initializerError(err)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if err := en.admission(); err != nil {
		return nil, err
	}
	if held := en.session; en.holds(held) {
		return nil, connect.NewError(connect.CodeAlreadyExists, en.heldError(held))
	}
	if err := e.addrTaken(en.session, local, req.Peer().Addr, addr); err != nil {
		return nil, err
	}
	if en.session != nil {
		en.session.endSession(EndVMShutdown) // its lease ended, or it never took one: nothing to tell
	}
	l := &Launch{
		engine:      e,
		token:       en.token,
		key:         en.key,
		init:        en.cfg.Initializer,
		hook:        en.cfg.OnCall,
		initialized: make(chan struct{}),
		ended:       make(chan struct{}),
		enrollment:  en,
		state:       stateInitialized,
		addr:        addr,
		version:     version,
		certSum:     cert.sum,
		certSPKI:    cert.spki,
		peer:        req.Peer().Addr,
		accepted:    en.now(),
	}
	close(l.initialized)
	en.session = l
	e.serving[l] = struct{}{}
	return connect.NewResponse(&runtimev1.InitializeResponse{HostName: e.hostName, ProtocolVersion: uint32(version)}), nil
}

// heldError is the refusal of an Initialize while the session held holds
// the enrollment. Called with engine.mu held.
func (en *Enrollment) heldError(held *Launch) error {
	how := fmt.Sprintf("it was accepted at %s and has %s to take its lease", held.accepted.UTC().Format(time.RFC3339), en.cfg.LeaseWait)
	if held.leased {
		how = "it holds the lease since " + held.leasedAt.UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("another process holds VM %q's enrollment: its session from %s, serving %s: %s; "+
		"a second process with the same token is refused until that session ends", en.cfg.Name, held.peer, held.addr, how)
}

// currentSession is the session a Lease is for.
func (en *Enrollment) currentSession() (*Launch, error) {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.session == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("call Initialize before Lease"))
	}
	return en.session, nil
}

// endSession ends a session of an enrollment for cause, unless it ended.
// Called with engine.mu held.
func (l *Launch) endSession(cause EndCause) {
	if l.state == stateEnded {
		return
	}
	delete(l.engine.serving, l)
	l.state = stateEnded
	l.cause = cause
	close(l.ended)
}

// upEvent is the beginning of the session l, which just took its lease.
// Called with engine.mu held, with the lease: what it publishes is the
// session's own.
func (en *Enrollment) upEvent(l *Launch) SessionEvent {
	l.leasedAt = en.now()
	return SessionEvent{Name: en.cfg.Name, Up: true, Peer: l.peer, Addr: l.addr, CertSHA256: l.certSum,
		CertSPKI: l.certSPKI, ProtocolVersion: l.version}
}

// tellUp tells OnSession of the beginning of the session l.
func (en *Enrollment) tellUp(l *Launch, ev SessionEvent) {
	en.notify.Lock()
	defer en.notify.Unlock()
	en.up = l
	if en.cfg.OnSession != nil {
		en.cfg.OnSession(ev)
	}
}

// leaseEnded ends the session l, whose lease ended on the VM's side or the
// link's (vmCause, detail, pings) unless the node ended it first, and
// tells OnSession why, unless a newer session already began. It returns
// the session's cause.
func (en *Enrollment) leaseEnded(l *Launch, vmCause EndCause, detail error, pings Pings) EndCause {
	e := en.engine
	e.mu.Lock()
	l.endSession(vmCause)
	cause := l.cause
	ev := SessionEvent{Name: en.cfg.Name, Peer: l.peer, Addr: l.addr, CertSHA256: l.certSum, CertSPKI: l.certSPKI,
		ProtocolVersion: l.version, Cause: cause, Duration: en.now().Sub(l.leasedAt)}
	e.mu.Unlock()
	ev.Err = endError(cause, detail, pings)
	en.notify.Lock()
	defer en.notify.Unlock()
	if en.up == l && en.cfg.OnSession != nil {
		en.cfg.OnSession(ev)
	}
	return cause
}

// leaseEndError is what the VM's lease stream ends with for a session
// that the node ended: nothing for a stop or a removal (the VM shuts down
// and exits 0), aborted when the VM should be started again.
func (en *Enrollment) leaseEndError(cause EndCause) error {
	if !cause.Restarts() {
		return nil
	}
	return connect.NewError(connect.CodeAborted, fmt.Errorf("the node ended VM %q's session: %s; start the VM again: it handshakes anew", en.cfg.Name, sessionEndText[cause]))
}
