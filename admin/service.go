package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/bearer"
	"github.com/vmre/vmre/internal/ratelog"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/supervise"
)

// ServiceName is the admin service's name, for reflection and health.
const ServiceName = adminv1connect.AdminServiceName

// maxBodyBytes caps an admin request: they hold a name at most.
const maxBodyBytes = 16 << 10

// Supervisor is what the service controls; *supervise.Supervisor is one.
type Supervisor interface {
	List() []supervise.VM
	Get(name string) (supervise.VM, bool)
	Stop(ctx context.Context, name string) (bool, error)
	Start(ctx context.Context, name string) (bool, error)
	Restart(ctx context.Context, name string) error
}

// Description is what the node knows of a VM beyond its supervision.
type Description struct {
	// Aliases are its further names; Digest is the SHA-256 of the bytes
	// it runs, and Pinned whether they matched a pin.
	Aliases []string
	Digest  string
	Pinned  bool
	// Removed: its file or declaration left the plugin directory and the
	// node keeps it running until it is stopped.
	Removed bool
	// Pending is a change it waits for, in a sentence ("changed: rolls out
	// 0356559ddd51 at its next start"), or "".
	Pending string
	// Sandbox is what the VM's sandbox applied at its last launch that got
	// as far, or nil.
	Sandbox *adminv1.Sandbox
}

// Config configures a Service.
type Config struct {
	// Supervisor holds the VMs (required).
	Supervisor Supervisor
	// Resolve turns a name or an alias into the VM's name (default: names
	// only).
	Resolve func(nameOrAlias string) (string, bool)
	// Describe tells what the node knows of a VM beyond its supervision
	// (optional).
	Describe func(name string) Description
	// Reload reloads the plugin directory and reconciles the node with it;
	// nil makes Reload unimplemented (a node of one VM, vmre run).
	Reload func(ctx context.Context) (*adminv1.ReloadResponse, error)
	// Logs, when set, serves TailLogs from its backlog.
	Logs *Logs
	// Enrollments, when set, are the node's remote VMs (GetEnrollment,
	// RotateEnrollment).
	Enrollments Enrollments
	// Rollouts, when set, are the node's rollouts (Rollout, Rollback,
	// History); nil makes them unimplemented (a node of one VM, vmre run).
	Rollouts Rollouts
	// Token, when set, is required as "Authorization: Bearer TOKEN". A
	// call without it is refused before its body is read.
	Token string
	// Logger receives the refused calls, at most 10 a second.
	Logger *slog.Logger
	// OnCall is told of every call's procedure and outcome (nil error when
	// accepted, else a *connect.Error), refusals of the token included.
	OnCall func(procedure string, err error)
}

// Service serves AdminService. Tell it of every change of a VM's state
// with StateChanged, and of every VM that leaves with Removed, for
// WatchVMs.
type Service struct {
	sup         Supervisor
	resolve     func(string) (string, bool)
	describe    func(string) Description
	reload      func(context.Context) (*adminv1.ReloadResponse, error)
	logs        *Logs
	enrollments Enrollments
	rollouts    Rollouts
	token       bearer.Key
	hasToken    bool
	log         *slog.Logger
	rejects     ratelog.Limiter
	onCall      func(string, error)
	errors      *connect.ErrorWriter

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	last     map[string]supervise.VM // each VM's latest state, for Removed

	closing   chan struct{} // closed by Close: the node stops
	closeOnce sync.Once
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Supervisor == nil {
		return nil, fmt.Errorf("%w: admin.Config needs a Supervisor", vmre.ErrInvalidConfig)
	}
	s := &Service{
		sup:         cfg.Supervisor,
		resolve:     cfg.Resolve,
		describe:    cfg.Describe,
		reload:      cfg.Reload,
		logs:        cfg.Logs,
		enrollments: cfg.Enrollments,
		rollouts:    cfg.Rollouts,
		log:         cfg.Logger,
		onCall:      cfg.OnCall,
		errors:      connect.NewErrorWriter(),
		watchers:    make(map[*watcher]struct{}),
		closing:     make(chan struct{}),
		last:        make(map[string]supervise.VM),
	}
	if cfg.Token != "" {
		s.token, s.hasToken = bearer.KeyOf(cfg.Token), true
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Close ends the streams of the service, WatchVMs and TailLogs with
// follow, without an error, and those that begin afterwards once they
// have sent what they hold: the node stops, and its HTTP server's shutdown
// must not wait for them. The unary calls still answer. Close is
// idempotent.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// handler implements the RPCs of AdminService over a Service.
type handler struct{ s *Service }

var _ adminv1connect.AdminServiceHandler = handler{}

// Handler returns the service's path prefix and handler, to mount on the
// node mux. With a token, a call without it is refused (unauthenticated,
// HTTP 401 under the Connect protocol) before its body is read.
func (s *Service) Handler() (string, http.Handler) {
	path, h := adminv1connect.NewAdminServiceHandler(handler{s},
		connect.WithInterceptors(told{s}),
		connect.WithReadMaxBytes(maxBodyBytes))
	return path, s.guard(h)
}

// guard checks the token of every call before anything reads its body,
// and answers a refusal in the protocol of the call (Connect, gRPC or
// gRPC-Web).
func (s *Service) guard(next http.Handler) http.Handler {
	if !s.hasToken {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if s.token.Matches(header) {
			next.ServeHTTP(w, r)
			return
		}
		msg := "missing admin token: send Authorization: Bearer TOKEN, with the token of the node's admin token file"
		if _, ok := bearer.Token(header); ok {
			msg = "wrong admin token: use the token of the node's admin token file"
		}
		err := connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
		s.rejects.Log(r.Context(), s.log, "admin call refused", slog.String("procedure", r.URL.Path),
			slog.String("peer", r.RemoteAddr), slog.String("error", msg))
		s.told(r.URL.Path, err)
		if s.errors.IsSupported(r) {
			s.errors.Write(w, r, err)
			return
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, msg, http.StatusUnauthorized)
	})
}

// told tells OnCall of the outcome of every call the token let through.
type told struct{ s *Service }

func (t told) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		t.s.told(req.Spec().Procedure, err)
		return res, err
	}
}

func (told) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (t told) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		t.s.told(conn.Spec().Procedure, err)
		return err
	}
}

func (s *Service) told(procedure string, err error) {
	if s.onCall != nil {
		s.onCall(procedure, err)
	}
}

// List is every VM as the admin API shows it, in the order they were
// added: the one view of ListVMs, WatchVMs and the node's GET /v1/vms.
func (s *Service) List() *adminv1.ListVMsResponse {
	vms := s.sup.List()
	out := &adminv1.ListVMsResponse{Vms: make([]*adminv1.VM, 0, len(vms))}
	for _, vm := range vms {
		out.Vms = append(out.Vms, s.View(vm))
	}
	return out
}

// lookup finds a VM by name or alias, or answers not_found.
func (s *Service) lookup(nameOrAlias string) (supervise.VM, error) {
	name := nameOrAlias
	if s.resolve != nil {
		if n, ok := s.resolve(nameOrAlias); ok {
			name = n
		}
	}
	vm, ok := s.sup.Get(name)
	if !ok {
		return supervise.VM{}, connect.NewError(connect.CodeNotFound,
			fmt.Errorf("no VM named %q: ListVMs (vmre ps) lists the node's VMs", nameOrAlias))
	}
	return vm, nil
}

func (h handler) ListVMs(context.Context, *connect.Request[adminv1.ListVMsRequest]) (*connect.Response[adminv1.ListVMsResponse], error) {
	return connect.NewResponse(h.s.List()), nil
}

func (h handler) GetVM(_ context.Context, req *connect.Request[adminv1.GetVMRequest]) (*connect.Response[adminv1.GetVMResponse], error) {
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.GetVMResponse{Vm: h.s.View(vm)}), nil
}

func (h handler) StopVM(ctx context.Context, req *connect.Request[adminv1.StopVMRequest]) (*connect.Response[adminv1.StopVMResponse], error) {
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	changed, err := h.s.sup.Stop(withTimeout(ctx, req.Msg.GetTimeout()), vm.Name)
	if err != nil {
		return nil, controlError(err)
	}
	after, _ := h.s.sup.Get(vm.Name)
	msg := "stopped " + vm.Name
	if !changed {
		msg = vm.Name + " was not running (" + vm.State.String() + "): nothing to stop"
	}
	return connect.NewResponse(&adminv1.StopVMResponse{Vm: h.s.View(after), Changed: changed, Message: safetext.Valid(msg)}), nil
}

func (h handler) StartVM(ctx context.Context, req *connect.Request[adminv1.StartVMRequest]) (*connect.Response[adminv1.StartVMResponse], error) {
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	changed, err := h.s.sup.Start(ctx, vm.Name)
	if err != nil {
		return nil, controlError(err)
	}
	after, _ := h.s.sup.Get(vm.Name)
	msg := "started " + vm.Name
	if !changed {
		msg = vm.Name + " is running already: nothing to start"
	}
	return connect.NewResponse(&adminv1.StartVMResponse{Vm: h.s.View(after), Changed: changed, Message: safetext.Valid(msg)}), nil
}

func (h handler) RestartVM(ctx context.Context, req *connect.Request[adminv1.RestartVMRequest]) (*connect.Response[adminv1.RestartVMResponse], error) {
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	if err := h.s.sup.Restart(withTimeout(ctx, req.Msg.GetTimeout()), vm.Name); err != nil {
		return nil, controlError(err)
	}
	after, _ := h.s.sup.Get(vm.Name)
	return connect.NewResponse(&adminv1.RestartVMResponse{Vm: h.s.View(after), Message: safetext.Valid("restarted " + vm.Name)}), nil
}

// withTimeout gives a stop the request's timeout, when it has one.
func withTimeout(ctx context.Context, timeout *durationpb.Duration) context.Context {
	if timeout == nil {
		return ctx
	}
	return supervise.WithGrace(ctx, timeout.AsDuration())
}

// controlError is the Connect error of a Stop, Start or Restart that
// failed: a launch's failure is failed_precondition with its error.
func controlError(err error) error {
	switch {
	case errors.Is(err, supervise.ErrUnknownVM):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, supervise.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the node is stopping: %w", err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeFailedPrecondition, err)
}

func (h handler) Reload(ctx context.Context, _ *connect.Request[adminv1.ReloadRequest]) (*connect.Response[adminv1.ReloadResponse], error) {
	if h.s.reload == nil {
		return nil, connect.NewError(connect.CodeUnimplemented,
			errors.New("this node has no plugin directory to reload (vmre run); vmre node --plugin-dir has"))
	}
	report, err := h.s.reload(ctx)
	if err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewResponse(report), nil
}
