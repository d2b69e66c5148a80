package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/vmre/vmre"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/ratelog"
	"github.com/vmre/vmre/internal/sockowner"
)

// Defaults of Config's zero values.
const (
	DefaultMaxPending   = 1024
	DefaultMaxBodyBytes = 16 << 10
	// DefaultLeaseKeepAlive is well under the idle timeouts of common HTTP
	// clients (Node's fetch ends a body idle for 300 s).
	DefaultLeaseKeepAlive = 30 * time.Second
	// defaultMaxTombstones is how many ended launches the engine remembers
	// so that their tokens get not_found rather than unauthenticated.
	defaultMaxTombstones = 4096
	// compressMinBytes is the smallest answer the engine compresses. Its
	// answers are a few bytes: gzip would only make them larger, at the cost
	// of a gzip writer's ~650 KB of state per call (the writers' pool is
	// emptied by every GC). Compressed requests are still accepted.
	compressMinBytes = 4 << 10
)

// Config configures an Engine. The zero value is ready to use.
type Config struct {
	// HostName is the host's name in responses and error messages
	// (default vmre.DefaultHostName).
	HostName string
	// AllowRemote accepts VM addresses that are not loopback.
	AllowRemote bool
	// MaxPending caps the launches waiting for their handshake at once
	// (default DefaultMaxPending).
	MaxPending int
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes).
	// Larger requests get resource_exhausted.
	MaxBodyBytes int
	// Logger receives one record per Initialize and Lease attempt with its
	// outcome (default: discard). Refusals are logged at most 10 a second;
	// the next record says how many were dropped. Hooks see every call.
	Logger *slog.Logger
	// Hooks, when set, are told of every call, accepted or refused.
	Hooks *Hooks
	// Services are further services served on the same mux as Handler
	// (the node's admin service), listed by its reflection and reported
	// serving by its grpc.health.v1 while the engine is.
	Services []string
	// TokenHint, when set, replaces the advice in the message of an
	// unknown token: what a VM given a wrong or rotated token should do,
	// such as the command that prints a remote VM's token (a node's CLI
	// names it; the library names none).
	TokenHint string
	// LeaseKeepAlive is the interval at which the engine sends a lease's
	// holder an empty LeaseResponse, so that no idle timeout of the VM's
	// HTTP client or of a proxy ends a quiet lease (default
	// DefaultLeaseKeepAlive).
	LeaseKeepAlive time.Duration
}

// Engine is the host's handshake service. It is safe for concurrent use.
type Engine struct {
	hostName      string
	allowRemote   bool
	maxPending    int
	maxBodyBytes  int
	maxTombstones int
	log           *slog.Logger
	hooks         *Hooks
	keepAlive     time.Duration
	tokenHint     string
	rejects       ratelog.Limiter
	health        *grpchealth.StaticChecker
	services      []string // every service for reflection: the engine's, health, Config.Services

	closing   chan struct{} // closed by Close; ends every lease
	closeOnce sync.Once
	owners    sockowner.Checker // the caller check's: released when no launch is pending, closed by Close

	mu          sync.Mutex
	closed      bool
	launches    map[tokenKey]*Launch
	serving     map[*Launch]struct{} // completed their handshake, not ended: their addr is taken
	reserved    []string             // the host's own addresses (Reserve)
	enrollments map[tokenKey]*Enrollment
	pending     int
	tombstones  []tokenKey // ended launches, oldest first
}

// New returns an Engine.
func New(cfg Config) *Engine {
	e := &Engine{
		hostName:      cfg.HostName,
		allowRemote:   cfg.AllowRemote,
		maxPending:    cfg.MaxPending,
		maxBodyBytes:  cfg.MaxBodyBytes,
		maxTombstones: defaultMaxTombstones,
		log:           cfg.Logger,
		hooks:         cfg.Hooks,
		keepAlive:     cfg.LeaseKeepAlive,
		tokenHint:     cfg.TokenHint,
		health:        grpchealth.NewStaticChecker(append([]string{runtimev1connect.RuntimeServiceName}, cfg.Services...)...),
		services:      append([]string{runtimev1connect.RuntimeServiceName, grpchealth.HealthV1ServiceName}, cfg.Services...),
		closing:       make(chan struct{}),
		launches:      make(map[tokenKey]*Launch),
		serving:       make(map[*Launch]struct{}),
		enrollments:   make(map[tokenKey]*Enrollment),
	}
	if e.hostName == "" {
		e.hostName = vmre.DefaultHostName
	}
	if e.maxPending <= 0 {
		e.maxPending = DefaultMaxPending
	}
	if e.maxBodyBytes <= 0 {
		e.maxBodyBytes = DefaultMaxBodyBytes
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.keepAlive <= 0 {
		e.keepAlive = DefaultLeaseKeepAlive
	}
	return e
}

// Handler serves RuntimeService, grpc.health.v1 and server reflection (v1
// and v1alpha) on their gRPC paths, and nothing else: mount it on each of
// Paths beside a node's own routes, or at "/" of any mux (chi's Mount
// included).
func (e *Engine) Handler() http.Handler {
	opts := connect.WithHandlerOptions(connect.WithReadMaxBytes(e.maxBodyBytes), connect.WithCompressMinBytes(compressMinBytes))
	mux := http.NewServeMux()
	mux.Handle(runtimev1connect.NewRuntimeServiceHandler(runtimeHandler{e}, opts))
	mux.Handle(grpchealth.NewHandler(e.health, opts))
	reflector := grpcreflect.NewStaticReflector(e.services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, opts))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, opts))
	return mux
}

// Paths are the path prefixes Handler serves, each ending in "/": the
// RuntimeService, grpc.health.v1 and the two versions of server
// reflection. Mount Handler on each (chi: r.Handle(p+"*", h)), or on "/".
func (e *Engine) Paths() []string {
	return []string{
		"/" + runtimev1connect.RuntimeServiceName + "/",
		"/" + grpchealth.HealthV1ServiceName + "/",
		"/" + grpcreflect.ReflectV1ServiceName + "/",
		"/" + grpcreflect.ReflectV1AlphaServiceName + "/",
	}
}

// Close ends every lease, marks the engine not serving in grpc health and
// refuses new launches. Pending launches get not_found from then on only
// once they End. Close is idempotent.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		for _, service := range e.services {
			if service != grpchealth.HealthV1ServiceName {
				e.health.SetStatus(service, grpchealth.StatusNotServing)
			}
		}
		close(e.closing)
		e.owners.Close()
	})
}

// authenticate finds the launch of the request's bearer token.
func (e *Engine) authenticate(h http.Header) (*Launch, error) {
	token := bearerToken(h.Get("Authorization"))
	if token == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated,
			fmt.Errorf("missing bearer token: send the header Authorization: Bearer $%s", vmre.EngineTokenKey))
	}
	l := e.lookup(token)
	if l == nil && e.tokenHint != "" {
		return nil, connect.NewError(connect.CodeUnauthenticated,
			errors.New("unknown token: it was not issued by this engine, or it was rotated: "+e.tokenHint))
	}
	if l == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated,
			errors.New("unknown token: it was not issued by this engine; use the token the host put in "+vmre.EngineTokenKey))
	}
	return l, nil
}

// runtimeHandler serves RuntimeService for an Engine. It is a type of its
// own so that the handlers are not methods of Engine: a host reaches them
// only over HTTP.
type runtimeHandler struct{ e *Engine }

func (h runtimeHandler) Initialize(ctx context.Context, req *connect.Request[runtimev1.InitializeRequest]) (*connect.Response[runtimev1.InitializeResponse], error) {
	e := h.e
	begin := time.Now()
	hook, res, err := e.initialize(ctx, req)
	call := Call{
		Procedure:       runtimev1connect.RuntimeServiceInitializeProcedure,
		Protocol:        req.Peer().Protocol,
		Peer:            req.Peer().Addr,
		Addr:            req.Msg.GetAddr(),
		ProtocolVersion: uint(req.Msg.GetProtocolVersion()),
		Err:             err,
		Elapsed:         time.Since(begin),
	}
	e.hooks.call(call, hook)
	if err != nil {
		e.rejects.Log(ctx, e.log, "initialize rejected",
			slog.String("peer", call.Peer), slog.String("protocol", call.Protocol),
			slog.String("code", call.Result()), slog.String("error", errorMessage(err)))
		return nil, err
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "initialize accepted",
		slog.String("peer", call.Peer), slog.String("protocol", call.Protocol),
		slog.String("addr", call.Addr), slog.Uint64("protocol_version", uint64(call.ProtocolVersion)))
	return res, nil
}

// initialize checks and completes an Initialize. It returns the hook of
// the launch of the call's token to tell of the call, once the token is
// known, even when it refuses the call. The hook of an accepted call
// is read under the lock that accepts it: a launch that ends the moment
// after (its VM died) still tells its hook of the call that completed it,
// which its host waits for.
func (e *Engine) initialize(ctx context.Context, req *connect.Request[runtimev1.InitializeRequest]) (func(Call), *connect.Response[runtimev1.InitializeResponse], error) {
	if en := e.lookupEnrollment(bearerToken(req.Header().Get("Authorization"))); en != nil {
		res, err := en.initialize(ctx, req)
		return en.cfg.OnCall, res, err
	}
	l, err := e.authenticate(req.Header())
	if err != nil {
		return l.onCall(), nil, err
	}
	addr, version := req.Msg.GetAddr(), uint(req.Msg.GetProtocolVersion())
	if err := checkAddr(addr, e.allowRemote); err != nil {
		return l.onCall(), nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	cert, err := checkCertificate(req.Msg.GetCertSha256(), req.Msg.GetCertificate())
	if err != nil {
		return l.onCall(), nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := e.checkOwner(ctx, l, req.Peer().Addr, addr); err != nil {
		return l.onCall(), nil, err
	}
	if err := l.init.Initialize(ctx, version, addr); err != nil {
		return l.onCall(), nil, initializerError(err)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	switch l.state {
	case stateInitialized:
		return l.hook, nil, connect.NewError(connect.CodeAlreadyExists,
			errors.New("this launch already completed its handshake; Initialize is called once per launch"))
	case stateEnded:
		return l.hook, nil, connect.NewError(connect.CodeNotFound,
			errors.New("this launch has ended (its handshake timed out or the host stopped it)"))
	}
	// Again under the lock that takes the address: another launch may
	// have announced it meanwhile.
	if err := e.addrTaken(l, localAddr(ctx), req.Peer().Addr, addr); err != nil {
		return l.hook, nil, err
	}
	e.serving[l] = struct{}{}
	l.state = stateInitialized
	l.closeProc()
	l.addr, l.version, l.certSum = addr, version, cert.sum
	e.launchDone()
	close(l.initialized)
	return l.hook, connect.NewResponse(&runtimev1.InitializeResponse{
		HostName:        e.hostName,
		ProtocolVersion: uint32(version),
	}), nil
}

// initializerError turns the host Initializer's refusal into a Connect
// error: failed_precondition, unless the Initializer chose a code itself. A
// version mismatch carries a ProtocolVersionMismatch detail.
func initializerError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var mismatch *vmre.VersionMismatchError
	if errors.As(err, &mismatch) {
		cerr := connect.NewError(connect.CodeFailedPrecondition, mismatch)
		if detail, derr := connect.NewErrorDetail(&runtimev1.ProtocolVersionMismatch{
			HostName:            mismatch.HostName,
			HostProtocolVersion: uint32(mismatch.HostVersion),
			VmProtocolVersion:   uint32(mismatch.VMVersion),
		}); derr == nil {
			cerr.AddDetail(detail)
		}
		return cerr
	}
	return connect.NewError(connect.CodeFailedPrecondition, err)
}

// Lease holds the stream open until the launch ends, the engine closes or
// the VM goes away, sending a keep-alive message at every interval.
func (h runtimeHandler) Lease(ctx context.Context, req *connect.Request[runtimev1.LeaseRequest], stream *connect.ServerStream[runtimev1.LeaseResponse]) error {
	e := h.e
	begin := time.Now()
	l, err := e.authenticateLease(req.Header())
	var up SessionEvent
	if err == nil {
		up, err = e.takeLease(l)
	}
	e.hooks.call(Call{
		Procedure: runtimev1connect.RuntimeServiceLeaseProcedure,
		Protocol:  req.Peer().Protocol,
		Peer:      req.Peer().Addr,
		Err:       err,
		Elapsed:   time.Since(begin),
	}, l.onCall())
	if err != nil {
		e.rejects.Log(ctx, e.log, "lease rejected", slog.String("peer", req.Peer().Addr),
			slog.String("code", connect.CodeOf(err).String()), slog.String("error", errorMessage(err)))
		return err
	}
	en := l.enrollment
	if en == nil {
		e.holdLease(ctx, l, stream, e.keepAlive)
		return nil
	}
	en.tellUp(l, up)
	cause := EndUnknown // the node ended it, or the engine closed
	var detail error
	var pings Pings
	if sendErr, vmSide := e.holdLease(ctx, l, stream, en.cfg.KeepAlive); vmSide {
		cause, pings, detail = vmSideEnd(ctx, sendErr)
	}
	select {
	case <-e.closing:
		if cause == EndUnknown {
			cause = EndNodeShutdown
		}
	default:
	}
	return en.leaseEndError(en.leaseEnded(l, cause, detail, pings))
}

// holdLease sends the lease's first message and its keep-alives, every
// keepAlive, until the launch ends, the engine closes, or the VM goes
// away. vmSide is true when the VM went away (ctx ended) or a send failed
// (sendErr).
func (e *Engine) holdLease(ctx context.Context, l *Launch, stream *connect.ServerStream[runtimev1.LeaseResponse], keepAlive time.Duration) (sendErr error, vmSide bool) {
	msg := &runtimev1.LeaseResponse{}
	if err := stream.Send(msg); err != nil {
		return err, true
	}
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			if err := stream.Send(msg); err != nil {
				return err, true
			}
		case <-l.ended:
			return nil, false
		case <-e.closing:
			return nil, false
		case <-ctx.Done():
			return nil, true
		}
	}
}

// authenticateLease finds the launch a Lease is for: the launch of its
// token, or an Enrollment's current session.
func (e *Engine) authenticateLease(h http.Header) (*Launch, error) {
	token := bearerToken(h.Get("Authorization"))
	if en := e.lookupEnrollment(token); en != nil {
		return en.currentSession()
	}
	return e.authenticate(h)
}

// takeLease gives the launch its lease. For an Enrollment's session, it
// returns the session's beginning, made under the same lock: the session
// that takes the lease is the one whose address and certificate it
// publishes.
func (e *Engine) takeLease(l *Launch) (SessionEvent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case l.state == statePending:
		return SessionEvent{}, connect.NewError(connect.CodeFailedPrecondition, errors.New("call Initialize before Lease"))
	case l.state == stateEnded && l.enrollment != nil:
		return SessionEvent{}, connect.NewError(connect.CodeNotFound, errors.New("this session has ended: handshake again (Initialize), then take the lease"))
	case l.state == stateEnded:
		return SessionEvent{}, connect.NewError(connect.CodeNotFound, errors.New("this launch has ended"))
	case l.leased:
		return SessionEvent{}, connect.NewError(connect.CodeAlreadyExists, errors.New("this launch already holds a lease"))
	}
	l.leased = true
	if l.enrollment != nil {
		return l.enrollment.upEvent(l), nil
	}
	return SessionEvent{}, nil
}

func errorMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
