package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/ratelog"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/registry"
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

// Description is what the node's registry knows of a VM.
type Description struct {
	Aliases []string
	Digest  string
	Pinned  bool
}

// Config configures a Service.
type Config struct {
	// Supervisor holds the VMs (required).
	Supervisor Supervisor
	// Resolve turns a name or an alias into the VM's name (default: names
	// only).
	Resolve func(nameOrAlias string) (string, bool)
	// Describe tells what the registry knows of a VM (optional).
	Describe func(name string) Description
	// Reload reloads the plugin directory and starts its new VMs; nil
	// makes Reload unimplemented (a node of one VM, vmre run).
	Reload func() (registry.Report, error)
	// Logs, when set, serves TailLogs from its backlog.
	Logs *Logs
	// Enrollments, when set, are the node's remote VMs (GetEnrollment,
	// RotateEnrollment).
	Enrollments Enrollments
	// Token, when set, is required as "Authorization: Bearer TOKEN".
	Token string
	// Logger receives the refused calls, at most 10 a second.
	Logger *slog.Logger
	// OnCall is told of every call's procedure and outcome (nil error when
	// accepted, else a *connect.Error), refusals of the token included.
	OnCall func(procedure string, err error)
}

// Service serves AdminService. Tell it of every change of a VM's state
// with StateChanged, for WatchVMs.
type Service struct {
	sup         Supervisor
	resolve     func(string) (string, bool)
	describe    func(string) Description
	reload      func() (registry.Report, error)
	logs        *Logs
	enrollments Enrollments
	token       [sha256.Size]byte
	hasToken    bool
	log         *slog.Logger
	rejects     ratelog.Limiter
	onCall      func(string, error)

	mu       sync.Mutex
	watchers map[*watcher]struct{}
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
		log:         cfg.Logger,
		onCall:      cfg.OnCall,
		watchers:    make(map[*watcher]struct{}),
	}
	if cfg.Token != "" {
		s.token, s.hasToken = sha256.Sum256([]byte(cfg.Token)), true
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Handler returns the service's path prefix and handler, to mount on the
// node mux.
func (s *Service) Handler() (string, http.Handler) {
	return adminv1connect.NewAdminServiceHandler(s,
		connect.WithInterceptors(guard{s}),
		connect.WithReadMaxBytes(maxBodyBytes))
}

// guard checks the token of every call and tells OnCall of its outcome.
type guard struct{ s *Service }

func (g guard) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := g.s.authorize(ctx, req.Spec().Procedure, req.Peer(), req.Header()); err != nil {
			return nil, err
		}
		res, err := next(ctx, req)
		g.s.told(req.Spec().Procedure, err)
		return res, err
	}
}

func (guard) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (g guard) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := g.s.authorize(ctx, conn.Spec().Procedure, conn.Peer(), conn.RequestHeader()); err != nil {
			return err
		}
		err := next(ctx, conn)
		g.s.told(conn.Spec().Procedure, err)
		return err
	}
}

// authorize checks a call's bearer token, in constant time on digests of
// a fixed length.
func (s *Service) authorize(ctx context.Context, procedure string, peer connect.Peer, h http.Header) error {
	if !s.hasToken {
		return nil
	}
	const prefix = "Bearer "
	got, ok := "", false
	if v := h.Get("Authorization"); len(v) >= len(prefix) && strings.EqualFold(v[:len(prefix)], prefix) {
		got, ok = strings.TrimSpace(v[len(prefix):]), true
	}
	sum := sha256.Sum256([]byte(got))
	if ok && subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1 {
		return nil
	}
	msg := "missing admin token: send Authorization: Bearer TOKEN, with the token of the node's admin token file"
	if ok {
		msg = "wrong admin token: use the token of the node's admin token file"
	}
	err := connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
	s.rejects.Log(ctx, s.log, "admin call refused", slog.String("procedure", procedure),
		slog.String("peer", peer.Addr), slog.String("error", msg))
	s.told(procedure, err)
	return err
}

func (s *Service) told(procedure string, err error) {
	if s.onCall != nil {
		s.onCall(procedure, err)
	}
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

func (s *Service) ListVMs(context.Context, *connect.Request[adminv1.ListVMsRequest]) (*connect.Response[adminv1.ListVMsResponse], error) {
	vms := s.sup.List()
	out := &adminv1.ListVMsResponse{Vms: make([]*adminv1.VM, 0, len(vms))}
	for _, vm := range vms {
		out.Vms = append(out.Vms, s.vmProto(vm))
	}
	return connect.NewResponse(out), nil
}

func (s *Service) GetVM(_ context.Context, req *connect.Request[adminv1.GetVMRequest]) (*connect.Response[adminv1.GetVMResponse], error) {
	vm, err := s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.GetVMResponse{Vm: s.vmProto(vm)}), nil
}

func (s *Service) StopVM(ctx context.Context, req *connect.Request[adminv1.StopVMRequest]) (*connect.Response[adminv1.StopVMResponse], error) {
	vm, err := s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	changed, err := s.sup.Stop(ctx, vm.Name)
	if err != nil {
		return nil, controlError(err)
	}
	after, _ := s.sup.Get(vm.Name)
	msg := "stopped " + vm.Name
	if !changed {
		msg = vm.Name + " was not running (" + vm.State.String() + "): nothing to stop"
	}
	return connect.NewResponse(&adminv1.StopVMResponse{Vm: s.vmProto(after), Changed: changed, Message: safetext.Valid(msg)}), nil
}

func (s *Service) StartVM(ctx context.Context, req *connect.Request[adminv1.StartVMRequest]) (*connect.Response[adminv1.StartVMResponse], error) {
	vm, err := s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	changed, err := s.sup.Start(ctx, vm.Name)
	if err != nil {
		return nil, controlError(err)
	}
	after, _ := s.sup.Get(vm.Name)
	msg := "started " + vm.Name
	if !changed {
		msg = vm.Name + " is running already: nothing to start"
	}
	return connect.NewResponse(&adminv1.StartVMResponse{Vm: s.vmProto(after), Changed: changed, Message: safetext.Valid(msg)}), nil
}

func (s *Service) RestartVM(ctx context.Context, req *connect.Request[adminv1.RestartVMRequest]) (*connect.Response[adminv1.RestartVMResponse], error) {
	vm, err := s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.sup.Restart(ctx, vm.Name); err != nil {
		return nil, controlError(err)
	}
	after, _ := s.sup.Get(vm.Name)
	return connect.NewResponse(&adminv1.RestartVMResponse{Vm: s.vmProto(after), Message: safetext.Valid("restarted " + vm.Name)}), nil
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

func (s *Service) Reload(context.Context, *connect.Request[adminv1.ReloadRequest]) (*connect.Response[adminv1.ReloadResponse], error) {
	if s.reload == nil {
		return nil, connect.NewError(connect.CodeUnimplemented,
			errors.New("this node has no plugin directory to reload (vmre run); vmre node --plugin-dir has"))
	}
	report, err := s.reload()
	if err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	out := &adminv1.ReloadResponse{}
	changed := make(map[*registry.VM]bool)
	for _, c := range report.Changed {
		changed[c.New] = true
		out.Changed = append(out.Changed, c.New.ID())
	}
	for _, vm := range report.Added {
		if !changed[vm] {
			out.Added = append(out.Added, vm.ID())
		}
	}
	for _, vm := range report.Unchanged {
		out.Unchanged = append(out.Unchanged, vm.ID())
	}
	for _, vm := range report.Removed {
		out.Removed = append(out.Removed, vm.ID())
	}
	for _, p := range report.Failed {
		out.Failed = append(out.Failed, &adminv1.ReloadFailure{Entry: safetext.Valid(p.Entry), Vm: safetext.Valid(p.ID),
			Kind: p.Kind.String(), Error: safetext.Valid(p.Err.Error())})
	}
	return connect.NewResponse(out), nil
}
