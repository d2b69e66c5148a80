package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// vm is one supervised VM: its goroutine, run, owns its runtime.
type vm struct {
	cmds   chan command  // operator commands, to run
	done   chan struct{} // closed when run returns
	remote *RemoteSpec   // set for a VM on another host, which has no goroutine

	// ctx ends when the VM is removed or the Supervisor closes: its
	// goroutine stops it and returns.
	ctx     context.Context
	cancel  context.CancelFunc
	removed chan struct{} // closed once Remove has forgotten the VM

	// remoteMu serializes the changes of a remote VM, which come from its
	// sessions and from operators: each checks the state it changes, and
	// the hooks hear of them in order.
	remoteMu sync.Mutex

	// Guarded by the Supervisor's mu.
	spec          Spec
	state         VM
	cancelAttempt context.CancelFunc // ends the launch in progress, if any
	removing      bool               // Remove was called
	stopCtx       context.Context    // Remove's context, which cuts the VM's grace short
	// pendingStops counts the Stop and Restart commands given (each
	// cancels the launch in progress) and not yet received by the VM's
	// goroutine: a launch that begins meanwhile, as a backoff ends, is
	// abandoned before it starts, as the command that comes next expects.
	pendingStops int
}

// step is where a VM's goroutine goes after a phase.
type step struct {
	next        next
	attempt     int            // failures since the VM last ran long enough to reset the backoff
	interrupted bool           // an operator's command abandoned the launch
	waiting     *command       // the Start or Restart that awaits the next launch
	restart     bool           // the next launch is the policy's restart
	err         error          // the failed launch, or the liveness failure, that led here
	exit        *launcher.Exit // how the run that led here ended
}

// next is what a VM's goroutine does after a phase.
type next int

const (
	launchNow next = iota
	backoffThenLaunch
	idle // wait for an operator's Start or Restart
	quit // the Supervisor closed
)

// run is the life of a VM under supervision: launch, watch, decide, wait,
// until the Supervisor closes.
func (s *Supervisor) run(v *vm) {
	defer close(v.done)
	st := step{next: launchNow}
	if s.spec(v).Stopped {
		s.update(v, "added stopped: Start or Restart launches it", func(vs *VM) { vs.State = StateStopped })
		st = step{next: idle}
	}
	for {
		switch st.next {
		case launchNow:
			st = s.attempt(v, st)
		case backoffThenLaunch:
			st = s.backoffWait(v, st)
		case idle:
			st = s.idleWait(v, st.interrupted)
		case quit:
			return
		}
	}
}

// attempt launches the VM and, when it runs, watches it until it ends or an
// operator or the Supervisor stops it.
func (s *Supervisor) attempt(v *vm, prev step) step {
	attempt := prev.attempt
	rt, err, interrupted := s.launch(v, prev)
	if prev.waiting != nil {
		prev.waiting.reply <- result{changed: true, err: err}
	}
	if err != nil {
		switch {
		case v.ctx.Err() != nil:
			s.update(v, "launch abandoned: "+s.quitting(v), func(st *VM) { st.State = StateStopped; failedAttempt(st, err) })
			return step{next: quit}
		case interrupted:
			s.update(v, "launch abandoned on request", func(st *VM) {
				st.State = StateStopped
				if !errors.Is(err, errNotLaunched) { // nothing was tried: the last attempt's outcome stands
					failedAttempt(st, err)
				}
			})
			return step{next: idle, interrupted: true}
		case permanent(err) || s.spec(v).Policy == Never:
			s.update(v, "launch failed; not retried", func(st *VM) { st.State = StateFailed; failedAttempt(st, err) })
			return step{next: idle}
		}
		return step{next: backoffThenLaunch, attempt: attempt + 1, err: err}
	}
	return s.watch(v, rt, attempt)
}

// errNotLaunched is the error of a launch that a stop came before: no
// command was made, nothing ran.
var errNotLaunched = fmt.Errorf("%w: stopped before its launch began", context.Canceled)

// launch makes the VM's command and launches it, under a context that an
// operator's Stop or Restart, or Close, cancels.
func (s *Supervisor) launch(v *vm, prev step) (rt Run, err error, interrupted bool) {
	ctx, cancel := context.WithCancel(v.ctx)
	s.mu.Lock()
	if v.pendingStops > 0 || ctx.Err() != nil {
		s.mu.Unlock()
		cancel()
		return nil, errNotLaunched, true
	}
	v.cancelAttempt = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		v.cancelAttempt = nil
		s.mu.Unlock()
		cancel()
	}()
	what := "launching"
	if prev.restart {
		what = "restarting"
	}
	s.update(v, what, func(st *VM) {
		st.State = StateStarting
		st.Launches++
		if prev.restart {
			st.Restarts++
		}
		if prev.exit != nil {
			st.LastExit = prev.exit
		}
	})
	spec := s.spec(v)
	cmd, err := spec.Command()
	if err != nil {
		return nil, err, false
	}
	// The VM is running in its state before the launcher tells anyone it
	// is ready: ready means listed.
	rt, err = s.launcher.Launch(ctx, LaunchRequest{Name: spec.Name, Cmd: cmd, Hooks: spec.Hooks,
		OnReady: func(r Ready) { s.running(v, r) }})
	if err == nil && rt == nil {
		err = fmt.Errorf("%w: the Launcher returned neither a run nor an error", vmre.ErrInvalidConfig)
	}
	return rt, err, err != nil && ctx.Err() != nil
}

// quitting says why the VM's goroutine ends: its removal or Close.
func (s *Supervisor) quitting(v *vm) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.removing {
		return "removed"
	}
	return "the supervisor closed"
}

// stopContext is the context that cuts the grace of a VM stopped as its
// goroutine ends: Remove's, or Close's.
func (s *Supervisor) stopContext(v *vm) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.removing {
		return v.stopCtx
	}
	return s.stopCtx
}

// spec returns the VM's current Spec.
func (s *Supervisor) spec(v *vm) Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return v.spec
}

// interrupt cancels the VM's launch in progress, if any, and keeps the
// next one from starting until the VM's goroutine has received the command
// (received) or the command was not delivered (undelivered).
func (v *vm) interrupt(s *Supervisor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v.pendingStops++
	if v.cancelAttempt != nil {
		v.cancelAttempt()
	}
}

// received notes that the VM's goroutine took command c.
func (v *vm) received(s *Supervisor, c command) {
	if c.kind != cmdStart {
		s.mu.Lock()
		v.pendingStops--
		s.mu.Unlock()
	}
}

// watch waits for the running VM to end, or for an operator's command, or
// for Close, and probes its liveness meanwhile.
func (s *Supervisor) watch(v *vm, rt Run, attempt int) step {
	live := s.probe(v)
	defer live.stop()
	// Every stop of the run goes through graceCtx, which the context of
	// whoever waits for the stop cuts short: the first Stop of a Run sets
	// its grace, and an unhealthy VM's stop may be followed by an
	// operator's or Close's.
	graceCtx, cutGrace := context.WithCancel(context.Background())
	defer cutGrace()
	stop := func(ctx context.Context) launcher.Exit {
		live.stop()                          // before whoever asked for the stop hears of it
		defer cutAfterGrace(ctx, cutGrace)() // before the SIGTERM: a grace of 0 is SIGKILL at once
		rt.Stop(graceCtx)
		defer context.AfterFunc(ctx, cutGrace)()
		<-rt.Done()
		exit, _ := rt.Exit()
		return exit
	}
	var unhealthy error // set once the liveness probes gave up on the VM
	for {
		select {
		case <-rt.Done():
			exit, _ := rt.Exit()
			s.keepStderr(v, rt)
			if exit.Ran >= s.backoff.ResetAfter {
				attempt = 0 // it ran long enough: the next failure starts over
			}
			policy := s.spec(v).Policy
			switch {
			case unhealthy != nil && policy == Never:
				s.update(v, "stopped unhealthy; the policy does not restart it", func(vs *VM) {
					vs.State, vs.LastExit, vs.Err = StateFailed, &exit, unhealthy
				})
				return step{next: idle}
			case unhealthy != nil:
				return step{next: backoffThenLaunch, attempt: attempt + 1, exit: &exit, err: unhealthy}
			case !policy.restarts(exit):
				s.update(v, "exited; the policy does not restart it", func(vs *VM) { vs.State, vs.LastExit = StateExited, &exit })
				return step{next: idle}
			}
			return step{next: backoffThenLaunch, attempt: attempt + 1, exit: &exit}
		case <-live.due():
			live.start()
		case err := <-live.results():
			if unhealthy = live.done(err); unhealthy != nil {
				s.update(v, "unhealthy; stopping it", func(vs *VM) { vs.State, vs.Err = StateUnhealthy, unhealthy })
				rt.Stop(graceCtx)
			}
		case c := <-v.cmds:
			v.received(s, c)
			switch c.kind {
			case cmdStart:
				c.reply <- result{} // it runs already
				continue
			case cmdStop:
				exit := stop(c.ctx)
				s.keepStderr(v, rt)
				s.update(v, "stopped on request", func(vs *VM) { vs.State, vs.LastExit = StateStopped, &exit })
				c.reply <- result{changed: true}
				return step{next: idle}
			case cmdRestart:
				exit := stop(c.ctx)
				s.keepStderr(v, rt)
				return step{next: launchNow, waiting: &c, exit: &exit}
			}
		case <-v.ctx.Done():
			exit := stop(s.stopContext(v))
			s.keepStderr(v, rt)
			s.update(v, "stopped: "+s.quitting(v), func(vs *VM) { vs.State, vs.LastExit = StateStopped, &exit })
			return step{next: quit}
		}
	}
}

// keepStderr keeps the last stderr lines of the VM's ended run, without
// telling of a change: the change that follows does.
func (s *Supervisor) keepStderr(v *vm, rt Run) {
	lines := rt.LastStderr()
	s.mu.Lock()
	defer s.mu.Unlock()
	v.state.Stderr = lines
}

// failedAttempt records a failed launch in the VM's state: its error, and
// how its process ended and what it wrote last when it got that far. The
// exit of an earlier run is never left as the last exit of a later
// attempt that failed.
func failedAttempt(vs *VM, err error) {
	vs.Err, vs.LastExit, vs.Stderr = err, nil, nil
	if le, ok := errors.AsType[*launcher.LaunchError](err); ok {
		vs.LastExit, vs.Stderr = le.Exit, le.Stderr
	}
}

// jitter draws from the Supervisor's random source, in [0, 1].
func (s *Supervisor) jitter() float64 {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	return min(max(s.rand.Float64(), 0), 1)
}

// errAttr is a failed launch's error in the Supervisor's record of the
// state it led to. The Launcher has logged a *launcher.LaunchError in full
// the moment before ("launch failed"), so the record names only its phase
// rather than repeat the text.
func errAttr(err error) slog.Attr {
	if le, ok := errors.AsType[*launcher.LaunchError](err); ok {
		return slog.String("phase", le.Phase.String())
	}
	return slog.String("error", err.Error())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// running records the VM running, as its launch's handshake completes.
func (s *Supervisor) running(v *vm, r Ready) {
	s.update(v, "running", func(vs *VM) {
		vs.State, vs.Pid, vs.Addr, vs.ProtocolVersion, vs.Err = StateRunning, r.Pid, r.Addr, r.ProtocolVersion, nil
		vs.Started, vs.Handshake = r.Started, r.Handshake
	})
}

// backoffWait waits out the delay before the next attempt, unless an
// operator stops or restarts the VM first, or the Supervisor closes.
func (s *Supervisor) backoffWait(v *vm, prev step) step {
	attempt := prev.attempt
	delay, capped := s.backoff.delay(attempt, s.jitter())
	at := s.clock.Now().Add(delay)
	state := StateBackoff
	if capped && attempt > 1 {
		state = StateCrashLoop // it failed again and again, up to the cap
	}
	s.update(v, "waiting to restart", func(vs *VM) {
		vs.State, vs.Attempt, vs.Delay, vs.NextAttempt = state, attempt, delay, at
		vs.Err = prev.err
		switch {
		case prev.exit != nil: // a run that ended, unhealthy or not
			vs.LastExit = prev.exit
		case prev.err != nil: // a launch that failed
			failedAttempt(vs, prev.err)
		}
	})
	timer := s.clock.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C():
			return step{next: launchNow, attempt: attempt, restart: true}
		case c := <-v.cmds:
			v.received(s, c)
			if c.kind == cmdStop {
				s.update(v, "stopped on request; the restart is cancelled", func(vs *VM) { vs.State = StateStopped })
				c.reply <- result{changed: true}
				return step{next: idle}
			}
			return step{next: launchNow, attempt: attempt, waiting: &c} // Start and Restart: now
		case <-v.ctx.Done():
			s.update(v, "stopped: "+s.quitting(v)+"; the restart is cancelled", func(vs *VM) { vs.State = StateStopped })
			return step{next: quit}
		}
	}
}

// idleWait waits for an operator to start the VM again, or for Close.
// interrupted says that the operator's Stop that comes next abandoned a
// launch, and so changed something.
func (s *Supervisor) idleWait(v *vm, interrupted bool) step {
	for {
		select {
		case c := <-v.cmds:
			v.received(s, c)
			if c.kind == cmdStop {
				c.reply <- result{changed: interrupted}
				interrupted = false
				continue
			}
			return step{next: launchNow, waiting: &c}
		case <-v.ctx.Done():
			return step{next: quit}
		}
	}
}

// update changes the VM's state under the lock, then logs the change and
// tells the hooks, on the VM's goroutine.
func (s *Supervisor) update(v *vm, what string, f func(*VM)) {
	s.mu.Lock()
	before := v.state.State
	f(&v.state)
	if v.state.State != before {
		v.state.Since = s.clock.Now()
	}
	snap := v.state
	s.mu.Unlock()

	attrs := []slog.Attr{slog.String("vm", snap.Name), slog.String("state", snap.State.String())}
	level := slog.LevelInfo
	switch snap.State {
	case StateBackoff, StateCrashLoop:
		attrs = append(attrs, slog.Int("attempt", snap.Attempt), slog.Duration("delay", snap.Delay.Round(time.Millisecond)))
		if snap.Err != nil {
			attrs = append(attrs, errAttr(snap.Err))
		} else if snap.LastExit != nil {
			attrs = append(attrs, slog.String("exit", snap.LastExit.String()))
		}
		level = slog.LevelWarn
	case StateFailed:
		attrs = append(attrs, errAttr(snap.Err))
		level = slog.LevelError
	case StateLost, StateUnhealthy:
		attrs = append(attrs, slog.String("error", errString(snap.Err)))
		level = slog.LevelWarn
	case StateRunning:
		if snap.Remote {
			attrs = append(attrs, slog.String("addr", snap.Addr), slog.String("peer", snap.Peer))
		} else {
			attrs = append(attrs, slog.Int("pid", snap.Pid), slog.String("addr", snap.Addr))
		}
	}
	s.log.LogAttrs(context.Background(), level, what, attrs...)
	if s.hooks != nil && s.hooks.State != nil {
		s.hooks.State(snap)
	}
}
