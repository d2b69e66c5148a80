package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
)

// MinTokenLen is the shortest token an Enrollment takes: 128 bits in hex.
const MinTokenLen = 32

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
	// goroutine that serves the lease. It must not block.
	OnSession func(SessionEvent)
}

// SessionEvent is the beginning or the end of an Enrollment's session.
type SessionEvent struct {
	// Name is the enrollment's name.
	Name string
	// Up is true when the VM took its lease (it runs), false when the
	// lease ended.
	Up bool
	// Peer is the address the VM's lease comes from.
	Peer string
	// Addr, CertSHA256 and ProtocolVersion are what the session's
	// Initialize announced.
	Addr            string
	CertSHA256      string
	ProtocolVersion uint
	// Err says why the lease ended: the connection broke, the VM closed
	// it, or (ErrSessionEnded) the node ended it. Nil while Up.
	Err error
	// Duration is how long the lease was held, when it ended.
	Duration time.Duration
}

// ErrSessionEnded is the cause of a session that the node ended: an
// operator stopped or restarted the VM, or rotated its token.
var ErrSessionEnded = errors.New("the node ended the session")

// Enrollment is a VM that the node does not start: it runs on another host
// under an orchestrator of its own, and handshakes with a long-lived token,
// again after each restart. Each handshake opens a session (a Launch of
// the enrollment); its lease is the VM's liveness. Only one session lives
// at a time: a second VM with the same token is refused while the first
// holds its lease. Its methods are safe for concurrent use.
type Enrollment struct {
	engine *Engine
	cfg    EnrollConfig

	// Guarded by engine.mu.
	token    string
	key      tokenKey
	admitted bool
	closed   bool
	session  *Launch // the current or last session, or nil
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
	en := &Enrollment{engine: e, cfg: cfg, token: cfg.Token, key: keyOf(cfg.Token), admitted: true}
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
// (unauthenticated) from then on, and the session it opened ends.
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
	if en.session != nil {
		en.session.endSession()
	}
	return nil
}

// Admit sets whether the VM may handshake: false ends its session (its
// lease ends, so it shuts down) and refuses its handshakes with
// failed_precondition until Admit(true).
func (en *Enrollment) Admit(ok bool) {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	en.admitted = ok
	if !ok && en.session != nil {
		en.session.endSession()
	}
}

// EndSession ends the current session: the VM's lease ends and it shuts
// down; its orchestrator may start it again, and it handshakes anew.
func (en *Enrollment) EndSession() {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.session != nil {
		en.session.endSession()
	}
}

// Close removes the enrollment: its token is refused from then on and its
// session ends.
func (en *Enrollment) Close() {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.closed {
		return
	}
	en.closed = true
	delete(e.enrollments, en.key)
	if en.session != nil {
		en.session.endSession()
	}
}

// newSession opens a session for an Initialize: refused while the VM is not
// admitted, or while another session holds its lease.
func (en *Enrollment) newSession() (*Launch, error) {
	e := en.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case en.closed:
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("unknown token: this enrollment was removed"))
	case !en.admitted:
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("the node's operator stopped VM %q: it is not admitted until started again (vmre start)", en.cfg.Name))
	case en.session != nil && en.session.state != stateEnded && en.session.leased:
		return nil, connect.NewError(connect.CodeAlreadyExists,
			fmt.Errorf("VM %q is connected and holds its lease: a second VM with the same token is refused", en.cfg.Name))
	}
	if en.session != nil {
		en.session.endSession() // a session that never took its lease
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
	}
	en.session = l
	return l, nil
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

// endSession ends a session of an enrollment. Called with engine.mu held.
func (l *Launch) endSession() {
	if l.state == stateEnded {
		return
	}
	delete(l.engine.serving, l)
	l.state = stateEnded
	close(l.ended)
}

// leased tells OnSession that the session's lease began.
func (en *Enrollment) leased(l *Launch, peer string) {
	e := en.engine
	e.mu.Lock()
	ev := SessionEvent{Name: en.cfg.Name, Up: true, Peer: peer, Addr: l.addr, CertSHA256: l.certSum, ProtocolVersion: l.version}
	e.mu.Unlock()
	if en.cfg.OnSession != nil {
		en.cfg.OnSession(ev)
	}
}

// leaseEnded ends the session whose lease, held since since, ended, and
// tells OnSession why.
func (en *Enrollment) leaseEnded(l *Launch, since time.Time, err error, ctx context.Context) {
	e := en.engine
	e.mu.Lock()
	byNode := l.state == stateEnded
	l.endSession()
	ev := SessionEvent{Name: en.cfg.Name, Addr: l.addr, CertSHA256: l.certSum, ProtocolVersion: l.version, Duration: time.Since(since)}
	e.mu.Unlock()
	switch {
	case byNode:
		ev.Err = ErrSessionEnded
	case err != nil:
		ev.Err = fmt.Errorf("the lease ended: the VM shut down or the connection broke: %w", err)
	case ctx.Err() != nil:
		ev.Err = fmt.Errorf("the lease ended: the VM shut down or the connection broke: %w", context.Cause(ctx))
	default:
		ev.Err = ErrSessionEnded // the engine closed
	}
	if en.cfg.OnSession != nil {
		en.cfg.OnSession(ev)
	}
}
