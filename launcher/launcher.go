package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/server"
)

// Launcher launches VMs under one engine. It is safe for concurrent use.
type Launcher struct {
	s          settings
	engine     *server.Engine
	engineAddr string
	starter    *starter

	// Set when the Launcher serves an engine of its own.
	cancelServe context.CancelFunc
	served      chan error
	closeOnce   sync.Once
}

// New returns a Launcher. Unless cfg.Engine is set (or cfg.Legacy, which
// needs no shared engine), it serves an engine of its own on a free
// loopback port until Close.
func New(cfg Config) (*Launcher, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	l := &Launcher{s: s, engine: s.Engine, engineAddr: s.EngineAddr}
	if l.engine != nil || s.Legacy {
		l.starter = newStarter()
		return l, nil
	}
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		return nil, fmt.Errorf("listen for the engine: %w", err)
	}
	l.starter = newStarter()
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
// makes VMs on client.Serve shut down), and the goroutine that starts VMs;
// Launch fails from then on. It does not stop VMs otherwise: stop them, or
// their Manager, first. Close is idempotent.
func (l *Launcher) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.starter.close()
		if l.cancelServe == nil {
			return
		}
		l.engine.Close()
		l.cancelServe()
		err = <-l.served
	})
	return err
}

// Launch starts cmd as a VM and returns once its handshake has completed.
// Launch owns cmd from then on: its Stdout and Stderr must be nil (set
// Config.Stdout and Config.Stderr for raw copies), and it sets its Env and
// SysProcAttr. On any failure the VM has been stopped and reaped when Launch
// returns, and the error is a *HandshakeError.
func (l *Launcher) Launch(ctx context.Context, cmd *exec.Cmd) (*Runtime, error) {
	begin := time.Now()
	if cmd == nil || cmd.Process != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, phaseError("config", fmt.Errorf("%w: Launch needs an unstarted *exec.Cmd with nil Stdout and Stderr", vmre.ErrInvalidConfig))
	}
	name := l.s.Name
	if name == "" {
		name = filepath.Base(cmd.Path)
	}
	check := &versionCheck{hostName: l.s.HostName, versions: l.s.versions, mismatch: make(chan *vmre.VersionMismatchError, 1)}

	hs, engineEnv, err := l.register(check)
	if err != nil {
		return nil, err
	}
	cmd.Env = childEnv(&l.s, cmd.Env, engineEnv)

	r := &Runtime{name: name, s: &l.s, onStop: hs.end}
	if err := r.start(cmd, l.starter); err != nil {
		hs.end()
		hs.close()
		return nil, phaseError("exec "+cmd.Path, err)
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "vm started", slog.String("path", cmd.Path),
		slog.Duration("exec", time.Since(begin)))

	if err := l.awaitHandshake(ctx, r, hs, check); err != nil {
		hs.close()
		err.Pid = r.status.Pid
		r.log.LogAttrs(ctx, slog.LevelError, "handshake failed", slog.String("error", err.Reason),
			slog.Duration("elapsed", time.Since(begin)))
		return nil, err
	}
	hs.close()
	r.status.Addr, r.version = hs.result()
	r.handshake = time.Since(begin)
	if l.s.Legacy && l.s.LegacyShutdown {
		r.shutdown = legacyShutdown(r.status.Addr)
	}
	if l.s.Manager != nil {
		l.s.Manager.TrackRuntime(r) // before the log line, which callers take as "ready"
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "handshake succeeded", slog.String("addr", r.status.Addr),
		slog.Uint64("protocol_version", uint64(r.version)), slog.Duration("elapsed", r.handshake))
	return r, nil
}

// Launch starts one VM under a Launcher of its own, whose engine lives as
// long as the VM.
func Launch(ctx context.Context, cmd *exec.Cmd, cfg Config) (*Runtime, error) {
	l, err := New(cfg)
	if err != nil {
		return nil, phaseError("config", err)
	}
	r, err := l.Launch(ctx, cmd)
	if err != nil {
		l.Close()
		return nil, err
	}
	r.AfterExit(func() { l.Close() })
	return r, nil
}

// handshake is one launch's side of the engine: native or legacy.
type handshake interface {
	initialized() <-chan struct{}
	result() (addr string, version uint)
	end()   // the token stops working and the lease ends
	close() // the legacy listener closes; no-op for native
}

func (l *Launcher) register(check *versionCheck) (handshake, []string, error) {
	if l.s.Legacy {
		ll, err := server.ListenLegacy(check, server.LegacyConfig{
			AllowRemote: l.s.AllowRemote,
			Logger:      l.s.Logger.With(slog.String("component", "engine")),
		})
		if err != nil {
			return nil, nil, phaseError("listen", err)
		}
		return legacyHandshake{ll}, []string{l.s.EngineAddressKey + "=" + ll.Addr()}, nil
	}
	launch, err := l.engine.NewLaunch(check)
	if err != nil {
		return nil, nil, phaseError("register launch", err)
	}
	env := []string{l.s.EngineAddressKey + "=" + l.engineAddr, vmre.EngineTokenKey + "=" + launch.Token()}
	return nativeHandshake{launch}, env, nil
}

type nativeHandshake struct{ *server.Launch }

func (h nativeHandshake) initialized() <-chan struct{} { return h.Initialized() }
func (h nativeHandshake) result() (string, uint)       { return h.Result() }
func (h nativeHandshake) end()                         { h.End() }
func (h nativeHandshake) close()                       {}

type legacyHandshake struct{ *server.LegacyListener }

func (h legacyHandshake) initialized() <-chan struct{} { return h.Initialized() }
func (h legacyHandshake) result() (string, uint)       { return h.Result() }
func (h legacyHandshake) end()                         {}
func (h legacyHandshake) close()                       { h.Close() }

// versionCheck is the Initializer of one launch.
type versionCheck struct {
	hostName string
	versions []uint
	mismatch chan *vmre.VersionMismatchError // the first mismatch, for the waiting Launch
}

func (c *versionCheck) Initialize(_ context.Context, version uint, _ string) error {
	if slices.Contains(c.versions, version) {
		return nil
	}
	err := &vmre.VersionMismatchError{HostName: c.hostName, HostVersion: c.versions[0], VMVersion: version}
	select {
	case c.mismatch <- err:
	default:
	}
	return err
}

// awaitHandshake waits for the first of: the VM's Initialize, a version
// mismatch, the timeout, the VM's exit, ctx. On failure it stops the VM and
// waits until it is reaped.
func (l *Launcher) awaitHandshake(ctx context.Context, r *Runtime, hs handshake, check *versionCheck) *HandshakeError {
	timer := time.NewTimer(l.s.HandshakeTimeout)
	defer timer.Stop()
	var herr *HandshakeError
	select {
	case <-hs.initialized():
		return nil
	case mismatch := <-check.mismatch:
		herr = &HandshakeError{Reason: mismatch.Error(), Hint: mismatch.Hint(), err: mismatch}
	case <-timer.C:
		herr = &HandshakeError{
			Reason: fmt.Sprintf("timeout: the VM did not call back within %s", l.s.HandshakeTimeout),
			Hint: fmt.Sprintf("check that it is a VM plugin, that it reads %s (set --engine-key if it reads another variable), "+
				"and that it starts within the handshake timeout (raise it with --handshake-timeout)", l.s.EngineAddressKey),
			Stderr:    r.LastStderr(),
			sentinels: []error{vmre.ErrHandshakeTimeout, vmre.ErrProcessNotFound},
		}
	case <-r.Done():
		select {
		case <-hs.initialized():
			return nil // it completed its handshake, then exited: the caller sees it in Done
		case mismatch := <-check.mismatch:
			return &HandshakeError{Reason: mismatch.Error(), Hint: mismatch.Hint(), err: mismatch}
		default:
		}
		exit, _ := r.Exit()
		herr := &HandshakeError{
			Reason:    "the VM exited before its handshake: " + exit.String(),
			Hint:      "it wrote nothing to stderr; run it by hand under `vmre serve` to see what it does",
			Exit:      &exit,
			Stderr:    r.LastStderr(),
			sentinels: []error{vmre.ErrProcessNotFound},
		}
		if len(herr.Stderr) > 0 {
			herr.Hint = "its last stderr lines below say why"
		}
		return herr
	case <-ctx.Done():
		herr = &HandshakeError{Reason: "cancelled while waiting for the VM to call back: " + context.Cause(ctx).Error(), err: context.Cause(ctx)}
	}
	if ctx.Err() == nil && !errors.Is(herr, vmre.ErrHandshakeTimeout) {
		r.Stop(ctx) // a VM that refused the version may stop gracefully, unless ctx ends
	} else {
		r.kill("handshake abandoned") // a VM that never called back gets no grace
	}
	<-r.Done()
	return herr
}
