package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"sync"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// Errors of the Supervisor's methods.
var (
	// ErrUnknownVM: no VM of that name is supervised.
	ErrUnknownVM = errors.New("unknown VM")
	// ErrClosed: the Supervisor is closed.
	ErrClosed = errors.New("supervisor closed")
)

// Config configures a Supervisor.
type Config struct {
	// Launcher launches the VMs (required): FromLauncher of a
	// *launcher.Launcher.
	Launcher Launcher
	// Backoff is the wait between attempts (zero values: the defaults).
	Backoff Backoff
	// Hooks, when set, are told of every change of state.
	Hooks *Hooks
	// Logger receives a record per change of state (default: discard).
	Logger *slog.Logger
	// Clock is the time the Supervisor reads and waits on (default: the
	// real one).
	Clock Clock
	// Rand is the random source of the backoff's jitter (default:
	// math/rand/v2's).
	Rand Rand
	// Liveness probes the running VMs (zero: no probes).
	Liveness Liveness
	// Rollout says how a rollout's new version is found healthy (zero
	// values: the defaults).
	Rollout RolloutConfig
}

// Spec is one VM to supervise.
type Spec struct {
	// Name names the VM in the Supervisor, its events and its logs.
	Name string
	// Command returns a fresh, unstarted command for each launch. An error
	// means the VM cannot be launched at all (a refused pin, for example):
	// it is not retried.
	Command func() (*exec.Cmd, error)
	// Policy says whether the VM is launched again when it ends.
	Policy Policy
	// Hooks, when set, see the launcher's events of this VM's launches.
	Hooks *launcher.Hooks
	// Version labels what Command runs (a node gives its digest), in
	// VM.Version and the rollouts' From.
	Version string
	// Stopped adds the VM stopped, as an operator's Stop leaves a VM: it
	// launches at Start or Restart. A node gives it for a VM that an
	// operator stopped before the node restarted.
	Stopped bool
}

// Supervisor keeps a set of VMs running by their policies. Its methods are
// safe for concurrent use.
type Supervisor struct {
	launcher Launcher
	backoff  Backoff
	hooks    *Hooks
	log      *slog.Logger
	clock    Clock
	liveness Liveness
	rollout  RolloutConfig

	randMu sync.Mutex
	rand   Rand

	ctx       context.Context // ends at Close: every VM's goroutine stops its VM
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu       sync.Mutex
	vms      map[string]*vm
	order    []string        // names, in the order they were added
	stopCtx  context.Context // Close's context, which cuts the VMs' grace short
	rollouts uint64          // the rollouts given, the last one's ID
}

// New returns a Supervisor with no VMs.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Launcher == nil {
		return nil, fmt.Errorf("%w: supervise.Config needs a Launcher", vmre.ErrInvalidConfig)
	}
	s := &Supervisor{
		launcher: cfg.Launcher,
		backoff:  cfg.Backoff.withDefaults(),
		hooks:    cfg.Hooks,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		liveness: cfg.Liveness.withDefaults(),
		rollout:  cfg.Rollout.withDefaults(),
		rand:     cfg.Rand,
		vms:      make(map[string]*vm),
		stopCtx:  context.Background(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.rand == nil {
		s.rand = globalRand{}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Add starts supervising spec: its VM is launched at once.
func (s *Supervisor) Add(spec Spec) error {
	if spec.Name == "" || spec.Command == nil {
		return fmt.Errorf("%w: a Spec needs a Name and a Command", vmre.ErrInvalidConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	if _, ok := s.vms[spec.Name]; ok {
		return fmt.Errorf("%w: a VM named %q is already supervised", vmre.ErrInvalidConfig, spec.Name)
	}
	v := &vm{spec: spec, cmds: make(chan command), done: make(chan struct{}), removed: make(chan struct{}), kick: make(chan struct{}, 1)}
	v.ctx, v.cancel = context.WithCancel(s.ctx)
	v.state = VM{Name: spec.Name, State: StateStarting, Since: s.clock.Now(), Version: spec.Version}
	if spec.Stopped {
		v.state.State = StateStopped
	}
	s.vms[spec.Name] = v
	s.order = append(s.order, spec.Name)
	go s.run(v)
	return nil
}

// Replace gives the VM spec.Name a new Spec: its command, policy and hooks
// serve every launch from then on, the run in progress carries on: the
// next restart, or an operator's Restart, runs it. Rollout moves a VM to
// a new version with a health check and a way back.
func (s *Supervisor) Replace(spec Spec) error {
	if spec.Command == nil {
		return fmt.Errorf("%w: a Spec needs a Command", vmre.ErrInvalidConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[spec.Name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownVM, spec.Name)
	}
	v.spec = spec
	return nil
}

// List returns a snapshot of every VM, in the order they were added.
func (s *Supervisor) List() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VM, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.vms[name].state)
	}
	return out
}

// Get returns a snapshot of the VM name.
func (s *Supervisor) Get(name string) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[name]
	if !ok {
		return VM{}, false
	}
	return v.state, true
}

// Stop stops the VM name and cancels any pending restart; a launch in
// progress is abandoned. It returns once the VM is reaped, and reports
// whether it changed anything: stopping a VM that does not run is a no-op.
// ctx cuts the VM's graceful stop short.
func (s *Supervisor) Stop(ctx context.Context, name string) (changed bool, err error) {
	r, err := s.do(ctx, name, cmdStop)
	return r.changed, err
}

// Start launches the VM name when it is stopped, exited or failed, or at
// once when it waits in a backoff. It returns once the launch is over: nil
// when the VM runs, the launch's error otherwise. A running VM is left
// alone: changed is false.
func (s *Supervisor) Start(ctx context.Context, name string) (changed bool, err error) {
	r, err := s.do(ctx, name, cmdStart)
	if err != nil {
		return false, err
	}
	return r.changed, r.err
}

// Restart stops the VM name if it runs, and launches it again at once,
// also during a backoff. It returns once the new launch is over.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	r, err := s.do(ctx, name, cmdRestart)
	if err != nil {
		return err
	}
	return r.err
}

// Remove stops the VM name as Stop does, cancelling any pending restart and
// abandoning a launch in progress, waits until it is reaped, then forgets
// it: List no longer shows it, its commands answer ErrUnknownVM, Hooks.Removed
// is told, and a later Add or AddRemote may use the name again. ctx cuts the
// VM's graceful stop short; Remove still waits for the reap, which follows
// at once. A remote VM is refused as Stop refuses it, then forgotten.
// Removing a VM that another Remove is removing waits for that one.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	v, ok := s.vms[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownVM, name)
	}
	first := !v.removing
	if first {
		v.removing, v.stopCtx = true, ctx
	}
	s.mu.Unlock()
	if !first {
		select {
		case <-v.removed:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	if v.remote != nil {
		s.doRemote(ctx, v, cmdStop)
	} else {
		v.cancel() // the VM's goroutine stops it under ctx, then returns
		<-v.done
	}
	s.mu.Lock()
	if s.vms[name] == v {
		delete(s.vms, name)
		s.order = slices.DeleteFunc(s.order, func(n string) bool { return n == name })
	}
	s.mu.Unlock()
	close(v.removed)
	s.log.Info("removed", slog.String("vm", name))
	if s.hooks != nil && s.hooks.Removed != nil {
		s.hooks.Removed(name)
	}
	return nil
}

// Close stops every VM in parallel, cancelling pending restarts, and waits
// until all are reaped or ctx ends; ctx also cuts their grace short. Close
// is idempotent; the Supervisor refuses new work from then on.
func (s *Supervisor) Close(ctx context.Context) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.stopCtx = ctx
		s.mu.Unlock()
		s.cancel()
	})
	s.mu.Lock()
	vms := make([]*vm, 0, len(s.vms))
	for _, v := range s.vms {
		vms = append(vms, v)
	}
	s.mu.Unlock()
	for _, v := range vms {
		select {
		case <-v.done:
		case <-ctx.Done():
			return
		}
	}
}

// do hands a command to the VM's goroutine and waits for its answer.
func (s *Supervisor) do(ctx context.Context, name string, kind commandKind) (result, error) {
	s.mu.Lock()
	v, ok := s.vms[name]
	removing := ok && v.removing
	s.mu.Unlock()
	if !ok || removing {
		return result{}, fmt.Errorf("%w %q", ErrUnknownVM, name)
	}
	if v.remote != nil {
		return s.doRemote(ctx, v, kind), nil
	}
	if kind != cmdStart {
		v.interrupt(s) // a launch in progress, or about to begin, is abandoned
	}
	reply := make(chan result, 1)
	select {
	case v.cmds <- command{kind: kind, ctx: ctx, reply: reply}:
	case <-v.done:
		v.received(s, command{kind: kind}) // never will be
		if s.ctx.Err() == nil {
			return result{}, fmt.Errorf("%w %q: it was removed", ErrUnknownVM, name)
		}
		return result{}, ErrClosed
	case <-ctx.Done():
		v.received(s, command{kind: kind})
		return result{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
}

type commandKind int

const (
	cmdStop commandKind = iota + 1
	cmdStart
	cmdRestart
)

type command struct {
	kind  commandKind
	ctx   context.Context
	reply chan<- result
}

type result struct {
	changed bool
	err     error // of the launch that a Start or Restart made
}
