package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vmre/vmre"
	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/gen/vm/runtime/runtimepbconnect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/ratelog"
	"github.com/vmre/vmre/internal/sockowner"
)

// LegacyConfig configures a LegacyListener.
type LegacyConfig struct {
	// Initializer decides whether the VM's protocol version is acceptable
	// (required; see AcceptVersions).
	Initializer vmre.Initializer
	// AllowRemote accepts VM addresses that are not loopback.
	AllowRemote bool
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int
	// Logger receives one record per Initialize attempt (default: discard);
	// refusals at most 10 a second.
	Logger *slog.Logger
	// Hooks, when set, are told of every call, accepted or refused.
	Hooks *Hooks
	// Listener, when set, is served instead of a new listener on
	// 127.0.0.1; the LegacyListener closes it.
	Listener net.Listener
	// CheckCaller accepts an Initialize only from the process the host
	// launched, named with SetProcess, or one of its descendants,
	// announcing an address where that tree listens, as
	// LaunchConfig.CheckCaller does for the native handshake.
	CheckCaller bool
}

// LegacyListener serves the rpcchainvm handshake, /vm.runtime.Runtime/Initialize,
// for a single launch on its own loopback listener. There is no token: the
// first valid call wins, the listener stops accepting connections right
// after it, and End ends the server.
type LegacyListener struct {
	init        vmre.Initializer
	allowRemote bool
	log         *slog.Logger
	hooks       *Hooks
	rejects     ratelog.Limiter
	ln          net.Listener
	srv         *http.Server
	served      chan struct{} // closed when the serving goroutine returns
	initialized chan struct{}
	closeOnce   sync.Once
	checkCaller bool
	owners      sockowner.Checker // closed by End
	started     chan struct{}     // closed by SetProcess
	ended       chan struct{}     // closed by End

	mu      sync.Mutex
	pid     int
	done    bool // a VM completed the handshake
	closed  bool // Close was called
	addr    string
	version uint
}

// ListenLegacy starts a LegacyListener on 127.0.0.1, on a free port, or on
// cfg.Listener.
func ListenLegacy(cfg LegacyConfig) (*LegacyListener, error) {
	if cfg.Initializer == nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, fmt.Errorf("%w: ListenLegacy needs an Initializer (see AcceptVersions)", vmre.ErrInvalidConfig)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = h2c.ListenLoopback(context.Background()); err != nil {
			return nil, fmt.Errorf("listen for the legacy handshake: %w", err)
		}
	}
	l := &LegacyListener{
		init:        cfg.Initializer,
		allowRemote: cfg.AllowRemote,
		log:         cfg.Logger,
		hooks:       cfg.Hooks,
		ln:          ln,
		served:      make(chan struct{}),
		initialized: make(chan struct{}),
		checkCaller: cfg.CheckCaller,
		started:     make(chan struct{}),
		ended:       make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	mux := http.NewServeMux()
	mux.Handle(runtimepbconnect.NewRuntimeHandler(legacyHandler{l}, connect.WithReadMaxBytes(maxBody), connect.WithCompressMinBytes(compressMinBytes)))
	l.srv = h2c.NewServer(mux)
	go func() {
		defer close(l.served)
		l.srv.Serve(ln) // returns ErrServerClosed after Close, or the listener's error once it closes
	}()
	return l, nil
}

// Addr is the listener's host:port, for the plugin's engine address variable.
func (l *LegacyListener) Addr() string { return l.ln.Addr().String() }

// Initialized is closed once a VM has completed the handshake.
func (l *LegacyListener) Initialized() <-chan struct{} { return l.initialized }

// Result returns the VM's address and protocol version, valid once
// Initialized is closed.
func (l *LegacyListener) Result() (addr string, protocolVersion uint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr, l.version
}

// End stops the server and waits for it: later calls are refused, because
// nothing listens any more. A call in flight, such as the answer to the
// winning Initialize, gets up to ShutdownTimeout to finish. End is
// idempotent.
func (l *LegacyListener) End() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.ended)
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if l.srv.Shutdown(ctx) != nil {
			l.srv.Close()
		}
		l.owners.Close()
	})
	<-l.served
}

// legacyHandler serves vm.runtime.Runtime for a LegacyListener; a host
// reaches it only over HTTP.
type legacyHandler struct{ l *LegacyListener }

func (h legacyHandler) Initialize(ctx context.Context, req *connect.Request[runtimepb.InitializeRequest]) (*connect.Response[emptypb.Empty], error) {
	l := h.l
	begin := time.Now()
	addr, version := req.Msg.GetAddr(), uint(req.Msg.GetProtocolVersion())
	err := l.initialize(ctx, req.Peer().Addr, addr, version)
	l.hooks.call(Call{
		Procedure:       runtimepbconnect.RuntimeInitializeProcedure,
		Protocol:        req.Peer().Protocol,
		Peer:            req.Peer().Addr,
		Addr:            addr,
		ProtocolVersion: version,
		Err:             err,
		Elapsed:         time.Since(begin),
	}, nil)
	if err != nil {
		l.rejects.Log(ctx, l.log, "legacy initialize rejected", slog.String("peer", req.Peer().Addr),
			slog.String("code", connect.CodeOf(err).String()), slog.String("error", errorMessage(err)))
		return nil, err
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "legacy initialize accepted", slog.String("peer", req.Peer().Addr),
		slog.String("addr", addr), slog.Uint64("protocol_version", uint64(version)))
	return connect.NewResponse(&emptypb.Empty{}), nil
}

// SetProcess names the process the host launched, whose tree alone may
// complete the handshake when LegacyConfig.CheckCaller is set; an
// Initialize that came before waits for it. Only the first call counts.
func (l *LegacyListener) SetProcess(pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pid == 0 {
		l.pid = pid
		close(l.started)
	}
}

func (l *LegacyListener) initialize(ctx context.Context, peer, addr string, version uint) error {
	if err := checkAddr(addr, l.allowRemote); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := l.checkOwner(ctx, peer, addr); err != nil {
		return err
	}
	if err := l.init.Initialize(ctx, version, addr); err != nil {
		return initializerError(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return connect.NewError(connect.CodeAlreadyExists, errors.New("this launch already completed its handshake"))
	}
	if l.closed {
		return connect.NewError(connect.CodeNotFound, errors.New("this launch has ended (its handshake timed out or the host stopped it)"))
	}
	l.done = true
	l.addr, l.version = addr, version
	close(l.initialized)
	l.ln.Close() // first valid call wins: accept no more connections
	return nil
}

// checkOwner refuses addr when it is the listener's own, and, with
// CheckCaller, a call or an address that is not the launched tree's.
func (l *LegacyListener) checkOwner(ctx context.Context, peer, addr string) error {
	l.mu.Lock()
	pending := !l.done && !l.closed
	l.mu.Unlock()
	if !pending {
		return nil // refused later as done or ended
	}
	local := localAddr(ctx)
	if local != "" && sameEndpoint(addr, local) {
		return ownerRefusal(ReasonNodeAddr, 0, peer, addr,
			"addr %q is the address of the handshake's listener, not the VM's: announce the address of the VM's own listener", addr)
	}
	if !l.checkCaller {
		return nil
	}
	if ok, err := awaitProcess(ctx, l.started, l.ended); !ok {
		return err
	}
	l.mu.Lock()
	pid := l.pid
	l.mu.Unlock()
	return checkCaller(&l.owners, sockowner.Query{Pid: pid}, local, peer, addr)
}
