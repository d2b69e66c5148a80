package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/sockowner"
)

// ErrEngineClosed is returned by NewLaunch after Close.
var ErrEngineClosed = errors.New("engine closed")

type launchState int

const (
	statePending launchState = iota
	stateInitialized
	stateEnded
)

// LaunchConfig configures one launch of an Engine.
type LaunchConfig struct {
	// Initializer decides whether the VM's protocol version is acceptable
	// (required; see AcceptVersions).
	Initializer vmre.Initializer
	// OnCall, when set, is told of every call made with this launch's token,
	// accepted or refused, until End, on the goroutine that serves it,
	// before the answer is written; an Initialize accepted before End is
	// told even when End comes before its answer. It must be fast and must
	// not block.
	// (The engine remembers an ended launch's token, not its OnCall: what
	// the function holds is freed once the launch ends.)
	OnCall func(Call)
	// CheckCaller makes the engine accept an Initialize only from the
	// process the host launched for this launch, which it names with
	// Launch.SetProcess, or from one of its descendants, announcing an
	// address where that process tree listens: anything else is refused as
	// permission_denied with an *OwnerError. It is checked on Linux;
	// elsewhere it changes nothing (docs/PROTOCOL.md, "The caller check").
	// An Initialize that comes before SetProcess waits for it.
	CheckCaller bool
}

// Launch is one VM's pending handshake in an Engine. The host gives the VM
// Token in the environment, waits on Initialized, and calls End when the VM
// is gone (or the handshake was abandoned) so that the token stops working.
type Launch struct {
	engine *Engine
	token  string
	key    tokenKey
	init   vmre.Initializer
	hook   func(Call) // guarded by engine.mu; nil once ended

	initialized chan struct{} // closed on a successful Initialize
	ended       chan struct{} // closed by End
	started     chan struct{} // closed by SetProcess
	checkCaller bool

	// Set for a session of an Enrollment: its calls may announce addresses
	// beyond loopback, and it is not counted among the pending launches.
	enrollment *Enrollment

	// Guarded by engine.mu.
	pid      int             // the launched process, once SetProcess has named it
	proc     *sockowner.Proc // its descriptors, for the caller check; closed once it is not pending
	checking int             // caller checks under way, which read proc
	state    launchState
	leased   bool
	addr     string
	version  uint
	certSum  string // the VM server's certificate fingerprint, or ""

	// Of an Enrollment's session, guarded by engine.mu.
	certSPKI string    // the public key's pin of the certificate the VM sent, or ""
	peer     string    // where its Initialize came from
	accepted time.Time // when its Initialize was accepted
	leasedAt time.Time // when it took its lease
	cause    EndCause  // why it ended
}

// Token is the launch's bearer token, for vmre.EngineTokenKey.
func (l *Launch) Token() string { return l.token }

// Initialized is closed once the VM has completed its handshake.
func (l *Launch) Initialized() <-chan struct{} { return l.initialized }

// Result returns the VM's address and protocol version. It is valid once
// Initialized is closed.
func (l *Launch) Result() (addr string, protocolVersion uint) {
	l.engine.mu.Lock()
	defer l.engine.mu.Unlock()
	return l.addr, l.version
}

// End retires the launch: later calls with its token get not_found, and the
// VM's lease, if it holds one, ends so the VM shuts down. End is idempotent.
func (l *Launch) End() {
	e := l.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.state == stateEnded {
		return
	}
	if l.enrollment != nil {
		l.endSession(EndRemoved)
		return
	}
	if l.state == statePending {
		e.launchDone()
	}
	delete(e.serving, l)
	l.state = stateEnded
	l.closeProc()
	l.hook = nil // the tombstone must not keep what the hook holds (a host's whole runtime)
	close(l.ended)
	e.tombstones = append(e.tombstones, l.key)
	if len(e.tombstones) > e.maxTombstones {
		old := e.tombstones[0]
		e.tombstones = e.tombstones[1:]
		if gone := e.launches[old]; gone != nil && gone.state == stateEnded {
			delete(e.launches, old)
		}
	}
}

// launchDone counts a launch that is no longer pending. With none left,
// the caller check's socket is let go: an idle engine holds no descriptor
// for it. It runs under engine.mu.
func (e *Engine) launchDone() {
	e.pending--
	if e.pending == 0 {
		e.owners.Release()
	}
}

// onCall is the launch's hook, or nil for a call that matched no launch or
// one that has ended.
func (l *Launch) onCall() func(Call) {
	if l == nil {
		return nil
	}
	l.engine.mu.Lock()
	defer l.engine.mu.Unlock()
	return l.hook
}

// NewLaunch registers a pending launch under a fresh 256-bit token.
func (e *Engine) NewLaunch(cfg LaunchConfig) (*Launch, error) {
	if cfg.Initializer == nil {
		return nil, fmt.Errorf("%w: NewLaunch needs an Initializer (see AcceptVersions)", vmre.ErrInvalidConfig)
	}
	token := newToken()
	l := &Launch{
		engine:      e,
		token:       token,
		key:         keyOf(token),
		init:        cfg.Initializer,
		hook:        cfg.OnCall,
		initialized: make(chan struct{}),
		ended:       make(chan struct{}),
		started:     make(chan struct{}),
		checkCaller: cfg.CheckCaller,
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrEngineClosed
	}
	if e.pending >= e.maxPending {
		return nil, fmt.Errorf("%d launches are already waiting for their handshake (the engine's limit): wait for some to finish", e.pending)
	}
	e.pending++
	e.launches[l.key] = l
	return l, nil
}

// lookup finds the launch of a token, comparing it in constant time.
func (e *Engine) lookup(token string) *Launch {
	if token == "" {
		return nil
	}
	e.mu.Lock()
	l := e.launches[keyOf(token)]
	e.mu.Unlock()
	if l == nil || subtle.ConstantTimeCompare([]byte(l.token), []byte(token)) != 1 {
		return nil
	}
	return l
}
