package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/execdiag"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmpeer"
	"github.com/vmre/vmre/server"
)

// Launcher launches VMs under one engine. It is safe for concurrent use.
type Launcher struct {
	s          settings
	hooks      hookList // the log's, then Config.Hooks
	outputs    outputs  // lines by VM name, stream and level
	engine     *server.Engine
	engineAddr string
	starter    *starter

	// Set when the Launcher serves an engine of its own.
	cancelServe context.CancelFunc
	served      chan error
	closeOnce   sync.Once

	exits   exitWatch    // learns when its VMs exit
	clients *vmpeer.Pool // the HTTP transports of its runtimes' clients
	slots   *launchSlots // Config.MaxConcurrentLaunches

	mu   sync.Mutex
	live map[*Runtime]struct{} // started and not yet exited
}

// New returns a Launcher. Unless cfg.Engine is set (or cfg.Legacy, which
// needs no shared engine), it serves an engine of its own on a free
// loopback port until Close.
func New(cfg Config) (*Launcher, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	l := &Launcher{s: s, engine: s.Engine, engineAddr: s.EngineAddr, clients: vmpeer.NewPool(),
		slots: newLaunchSlots(maxConcurrentLaunches(s.MaxConcurrentLaunches))}
	l.hooks = hookList{logHooks(s.Logger, s.GracefulTimeout)}
	if s.Hooks != nil {
		l.hooks = append(l.hooks, s.Hooks)
	}
	if l.engine != nil || s.Legacy {
		l.starter = newStarter(s.Start)
		return l, nil
	}
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		return nil, fmt.Errorf("listen for the engine: %w", err)
	}
	l.starter = newStarter(s.Start)
	l.engine = server.New(server.Config{
		HostName:    s.HostName,
		AllowRemote: s.AllowRemote,
		Logger:      s.Logger.With(slog.String("component", "engine")),
	})
	l.engineAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	l.cancelServe, l.served = cancel, make(chan error, 1)
	go func() { l.served <- server.Serve(ctx, ln, l.engine.Handler()) }()
	return l, nil
}

// EngineAddr is the address VMs call back, or "" in legacy mode.
func (l *Launcher) EngineAddr() string { return l.engineAddr }

// Close stops the Launcher's own engine, ending the leases of its VMs (which
// makes VMs on client.Serve shut down), the goroutine that starts VMs, and
// the one that watches for their exits once the last has exited; Launch
// fails from then on. It does not stop VMs otherwise: stop them (or the
// vmre.Manager that tracks them) first. Close is idempotent.
func (l *Launcher) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.starter.close()
		l.exits.close()
		l.clients.CloseIdleConnections()
		if l.cancelServe == nil {
			return
		}
		l.mu.Lock()
		for r := range l.live {
			r.closeLease(true) // as the engine's close ends the leases held over HTTP
		}
		l.mu.Unlock()
		l.engine.Close()
		l.cancelServe()
		err = <-l.served
	})
	return err
}

// Launch starts cmd as a VM and returns once its handshake has completed
// and the host has connected to the address the VM announced (the first
// connection of Runtime.HTTPClient). Launch owns cmd from then on: its
// Stdout and Stderr must be nil (set Config.Stdout and Config.Stderr for raw
// copies), it sets its Env, SysProcAttr and ExtraFiles (the VM's lease pipe
// is added to them), and the Runtime, not the command's Context
// (exec.CommandContext), stops the VM: Launch clears Cancel and WaitDelay. On any failure the VM has been stopped and reaped when Launch
// returns, and the error is a *LaunchError whose Phase says what failed.
func (l *Launcher) Launch(ctx context.Context, cmd *exec.Cmd, opts ...LaunchOption) (*Runtime, error) {
	var o launchOptions
	for _, opt := range opts {
		opt.apply(&o)
	}
	r := &Runtime{name: o.name, s: &l.s, hooks: l.hooks, outputs: &l.outputs}
	if o.hooks != nil {
		r.hooks = append(slices.Clip(l.hooks), o.hooks)
	}
	if cmd == nil || cmd.Process != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		return r.failed(&LaunchError{Phase: PhaseConfig,
			Err: fmt.Errorf("%w: Launch needs an unstarted *exec.Cmd with nil Stdout and Stderr", vmre.ErrInvalidConfig)})
	}
	r.path = commandFile(cmd)
	if r.name == "" {
		r.name = l.s.Name
	}
	if r.name == "" {
		r.name = filepath.Base(r.path)
	}
	// Released once Launch has told its last event (deferred first, run
	// last); the launch's times count from its turn.
	if err := l.slots.acquire(ctx); err != nil {
		return r.failed(&LaunchError{Phase: PhaseExec, Err: err})
	}
	defer l.slots.release()
	begin := time.Now()

	wait := &handshakeWait{mismatch: make(chan *vmre.VersionMismatchError, 1), accepted: make(chan struct{})}
	wait.reach = newReach(server.AcceptVersions(l.s.HostName, l.s.versions...), l.s.HandshakeTimeout)
	hs, engineEnv, lerr := l.register(r, wait)
	if lerr != nil {
		return r.failed(lerr)
	}
	wait.reach.setHandshake(hs)
	r.onStop = hs.End
	// The token, or the legacy listener's address: this launch's alone.
	marker := engineEnv[len(engineEnv)-1]
	if !l.s.Legacy { // rpcchainvm plugins know no lease
		leaseEnv, vmEnd, hostEnd, err := openLease(cmd)
		if err != nil {
			hs.End()
			return r.failed(&LaunchError{Phase: PhaseExec, Err: fmt.Errorf("make the VM's lease pipe: %w", err)})
		}
		if vmEnd != nil {
			engineEnv = append(engineEnv, leaseEnv)
			r.leaseVMEnd, r.lease = vmEnd, hostEnd
		}
	}
	cmd.Env = childEnv(&l.s, cmd.Env, engineEnv)

	if err := r.start(cmd, l.starter, l, marker); err != nil {
		hs.End()
		if errors.Is(err, errClosed) {
			return r.failed(&LaunchError{Phase: PhaseConfig, Err: err})
		}
		return r.failed(&LaunchError{Phase: PhaseExec, Err: err, Diagnosis: execdiag.Explain(cmd.Path, err)})
	}
	hs.SetProcess(r.status.Pid) // its Initialize may be waiting for it
	r.hooks.started(StartedInfo{VM: r.name, Pid: r.status.Pid, Path: r.path, Exec: time.Since(begin)})

	if lerr := l.awaitHandshake(ctx, r, hs, wait); lerr != nil {
		wait.reach.take("") // closes what it dialled
		lerr.Stderr, lerr.Output = r.LastStderr(), r.LastOutput()
		return r.failed(lerr)
	}
	if l.s.Legacy {
		hs.End() // the first valid call won: the launch's listener closes
	}
	r.status.Addr, r.version = hs.Result()
	r.openClient(l.clients, r.status.Addr, wait.reach.take(r.status.Addr))
	r.handshake = time.Since(begin)
	r.hooks.handshake(HandshakeInfo{VM: r.name, Pid: r.status.Pid, Addr: r.status.Addr,
		ProtocolVersion: r.version, Elapsed: r.handshake})
	if l.s.Legacy && l.s.LegacyShutdown {
		r.shutdown = legacyShutdown(r.client, r.status.Addr)
	}
	if o.ready != nil {
		o.ready(r)
	}
	r.hooks.ready(ReadyInfo{VM: r.name, Pid: r.status.Pid, Addr: r.status.Addr,
		ProtocolVersion: r.version, Elapsed: time.Since(begin)})
	return r, nil
}

// remember lists r among the VMs that run.
func (l *Launcher) remember(r *Runtime) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live == nil {
		l.live = make(map[*Runtime]struct{})
	}
	l.live[r] = struct{}{}
}

// forget takes r, which has exited, off the list.
func (l *Launcher) forget(r *Runtime) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.live, r)
}

// commandFile is the file a command runs, as its operators name it: its
// Path, or, for a sealed copy run through /proc/self/fd/N (package
// registry), the file named by its Args[0].
func commandFile(cmd *exec.Cmd) string {
	if strings.HasPrefix(cmd.Path, "/proc/self/fd/") && len(cmd.Args) > 0 && filepath.IsAbs(cmd.Args[0]) {
		return cmd.Args[0]
	}
	return cmd.Path
}

// failed completes err with what the launch knows, reports it and returns it.
func (r *Runtime) failed(err *LaunchError) (*Runtime, error) {
	err.VM, err.Path, err.Pid = r.name, r.path, r.status.Pid
	r.hooks.launchFailed(err)
	return nil, err
}

// handshakeWait is what a launch's engine hook and Initializer tell the
// waiting Launch.
type handshakeWait struct {
	mismatch     chan *vmre.VersionMismatchError // the first mismatch
	reach        *reach                          // the launch's Initializer
	accepted     chan struct{}                   // closed once the accepted Initialize has been told
	acceptedOnce sync.Once
}

// register takes the launch into the engine, or a legacy listener of its
// own, and returns the variables that tell the VM where to call back.
func (l *Launcher) register(r *Runtime, wait *handshakeWait) (server.Handshake, []string, *LaunchError) {
	init := wait.reach
	onCall := func(c server.Call) {
		// Told before Launch may act on the call: its events come first.
		r.hooks.engineCall(EngineCallInfo{VM: r.name, Pid: int(r.pid.Load()), Call: c})
		if c.Accepted() && strings.HasSuffix(c.Procedure, "/Initialize") {
			wait.acceptedOnce.Do(func() { close(wait.accepted) })
		}
		var mismatch *vmre.VersionMismatchError
		if errors.As(c.Err, &mismatch) {
			select {
			case wait.mismatch <- mismatch:
			default:
			}
		}
	}
	if l.s.Legacy {
		ll, err := server.ListenLegacy(server.LegacyConfig{
			Initializer: init,
			AllowRemote: l.s.AllowRemote,
			Logger:      l.s.Logger.With(slog.String("component", "engine")),
			Hooks:       &server.Hooks{Call: onCall},
			CheckCaller: !l.s.NoCallerCheck,
		})
		if err != nil {
			return nil, nil, &LaunchError{Phase: PhaseListen, Err: err}
		}
		return ll, []string{l.s.EngineAddressKey + "=" + ll.Addr()}, nil
	}
	launch, err := l.engine.NewLaunch(server.LaunchConfig{Initializer: init, OnCall: onCall, CheckCaller: !l.s.NoCallerCheck})
	if err != nil {
		return nil, nil, &LaunchError{Phase: PhaseListen, Err: err}
	}
	env := []string{l.s.EngineAddressKey + "=" + l.engineAddr, vmre.EngineTokenKey + "=" + launch.Token()}
	return launch, env, nil
}

// awaitHandshake waits for the first of: the VM's Initialize, a version
// mismatch, an address where nothing answers, the timeout, the VM's exit,
// ctx. On failure it stops the VM and waits until it is reaped. A completed
// handshake returns once the hooks have been told of the call that
// completed it, which the engine does just after it marks the launch
// initialized.
func (l *Launcher) awaitHandshake(ctx context.Context, r *Runtime, hs server.Handshake, wait *handshakeWait) *LaunchError {
	timer := time.NewTimer(l.s.HandshakeTimeout)
	defer timer.Stop()
	var lerr *LaunchError
	select {
	case <-hs.Initialized():
		<-wait.accepted
		return nil
	case mismatch := <-wait.mismatch:
		lerr = &LaunchError{Phase: PhaseVersion, Err: mismatch}
	case err := <-wait.reach.unreachable:
		select {
		case <-hs.Initialized():
			<-wait.accepted
			return nil // another call of the VM completed the handshake
		default:
		}
		lerr = &LaunchError{Phase: PhaseReady, Err: err}
	case <-timer.C:
		lerr = &LaunchError{Phase: PhaseHandshakeWait, Timeout: l.s.HandshakeTimeout, Err: vmre.ErrHandshakeTimeout}
		if err := wait.reach.notAccepted(); err != nil {
			// It called, and waits for its answer, which waits for the
			// host's connection to its listener.
			lerr = &LaunchError{Phase: PhaseReady, Timeout: l.s.HandshakeTimeout, Err: err}
		}
	case <-r.Done():
		select {
		case <-hs.Initialized():
			<-wait.accepted
			return nil // it completed its handshake, then exited: the caller sees it in Done
		case mismatch := <-wait.mismatch:
			return &LaunchError{Phase: PhaseVersion, Err: mismatch}
		case err := <-wait.reach.unreachable:
			return &LaunchError{Phase: PhaseReady, Err: err}
		default:
		}
		exit, _ := r.Exit()
		return &LaunchError{Phase: PhaseHandshakeWait, Exit: &exit, Err: fmt.Errorf("the VM exited: %s", exit.String())}
	case <-ctx.Done():
		lerr = &LaunchError{Phase: PhaseHandshakeWait, Err: context.Cause(ctx)}
	}
	if (lerr.Phase == PhaseVersion || lerr.Phase == PhaseReady) && ctx.Err() == nil {
		r.stopFor(ctx, ReasonHandshakeRefused) // a VM whose call was refused may stop gracefully
	} else {
		r.kill(ReasonHandshakeAbandoned) // a VM that never called back gets no grace
	}
	<-r.Done()
	return lerr
}
