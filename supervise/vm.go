package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
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
	kick   chan struct{} // a rollout waits in pendingRollout (holds one)

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
	// pendingRollout is the rollout given and not yet begun; rolling is
	// set from Rollout to the rollout's end.
	pendingRollout *rolloutReq
	rolling        bool
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
	stopped     bool           // an operator's Stop led here
	roll        *rolloutReq    // the rollout to begin (rollingOut)
	run         Run            // the run in progress, which the rollout replaces
}

// next is what a VM's goroutine does after a phase.
type next int

const (
	launchNow next = iota
	backoffThenLaunch
	idle       // wait for an operator's Start or Restart
	rollingOut // a rollout begins
	quit       // the Supervisor closed
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
		if st.stopped {
			s.dropRollout(v, "stopped on request")
		}
		switch st.next {
		case launchNow:
			st = s.attempt(v, st)
		case backoffThenLaunch:
			st = s.backoffWait(v, st)
		case idle:
			st = s.idleWait(v, st.interrupted)
		case rollingOut:
			st = s.rollOut(v, st)
		case quit:
			s.dropRollout(v, s.quitting(v))
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
	what := "launching"
	if prev.restart {
		what = "restarting"
	}
	spec := s.spec(v)
	l := s.launchWith(v, launchSpec{what: what, command: spec.Command, version: spec.Version, restart: prev.restart, exit: prev.exit})
	return l.run, l.err, l.interrupted
}

// launchSpec is one launch of a VM's goroutine.
type launchSpec struct {
	what    string // the record of the change of state
	command func() (*exec.Cmd, error)
	version string
	restart bool           // the policy's restart
	exit    *launcher.Exit // the previous run's end, the VM's last exit from now
	// beside: the VM shows another run meanwhile (a rollout's old run):
	// the launch neither makes it starting nor, by default, running.
	beside bool
	// onReady is told of the handshake (default: the VM runs this run).
	onReady func(Ready)
	// also changes the VM's state with the launch's change.
	also func(*VM)
	// deadline, when set, abandons the launch when it fires.
	deadline Timer
}

// launched is how a launch ended.
type launched struct {
	run Run
	err error
	// interrupted: an operator's command, or the VM's end, abandoned it;
	// deadline: the launch's deadline did.
	interrupted, deadline bool
}

// launchWith makes a command and launches it, under a context that an
// operator's Stop or Restart, or Close, cancels.
func (s *Supervisor) launchWith(v *vm, ls launchSpec) launched {
	ctx, cancel := context.WithCancelCause(v.ctx)
	s.mu.Lock()
	if v.pendingStops > 0 || ctx.Err() != nil {
		s.mu.Unlock()
		cancel(nil)
		return launched{err: errNotLaunched, interrupted: true}
	}
	v.cancelAttempt = func() { cancel(nil) }
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		v.cancelAttempt = nil
		s.mu.Unlock()
		cancel(nil)
	}()
	s.update(v, ls.what, func(st *VM) {
		if !ls.beside {
			st.State = StateStarting
		}
		st.Launches++
		if ls.restart {
			st.Restarts++
		}
		if ls.exit != nil {
			st.LastExit = ls.exit
		}
		if ls.also != nil {
			ls.also(st)
		}
	})
	spec := s.spec(v)
	cmd, err := ls.command()
	if err != nil {
		return launched{err: err}
	}
	deadline := func() bool { return false }
	if ls.deadline != nil {
		deadline = abandonAt(ls.deadline, cancel)
	}
	onReady := ls.onReady
	if onReady == nil {
		onReady = func(r Ready) { s.running(v, r, ls.version) }
	}
	// The VM is running in its state before the launcher tells anyone it
	// is ready: ready means listed.
	rt, err := s.launcher.Launch(ctx, LaunchRequest{Name: spec.Name, Cmd: cmd, Hooks: spec.Hooks, OnReady: onReady})
	if err == nil && rt == nil {
		err = fmt.Errorf("%w: the Launcher returned neither a run nor an error", vmre.ErrInvalidConfig)
	}
	fired := deadline()
	return launched{run: rt, err: err, deadline: fired, interrupted: err != nil && ctx.Err() != nil && !fired}
}

// abandonAt cancels a launch when t fires. Its result stops the watch,
// once the launch has returned, and reports whether t fired.
func abandonAt(t Timer, cancel context.CancelCauseFunc) (stop func() bool) {
	done, fired := make(chan struct{}), make(chan bool, 1)
	go func() {
		select {
		case <-t.C():
			cancel(errLaunchDeadline)
			fired <- true
		case <-done:
			fired <- false
		}
	}()
	return func() bool {
		close(done)
		return <-fired
	}
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
		kick := v.kick
		if unhealthy != nil {
			kick = nil // it is being stopped: its rollout begins after
		}
		select {
		case <-kick:
			if req := s.takeRollout(v); req != nil {
				return step{next: rollingOut, roll: req, run: rt, attempt: attempt}
			}
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
				return step{next: idle, stopped: true}
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

// running records the VM running its version's run, as the launch's
// handshake completes.
func (s *Supervisor) running(v *vm, r Ready, version string) {
	s.update(v, "running", func(vs *VM) { runs(vs, r, version) })
}

// runs shows the run r of version as the VM's.
func runs(vs *VM, r Ready, version string) {
	vs.State, vs.Pid, vs.Addr, vs.ProtocolVersion, vs.Err = StateRunning, r.Pid, r.Addr, r.ProtocolVersion, nil
	vs.Started, vs.Handshake, vs.Version = r.Started, r.Handshake, version
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
		case <-v.kick:
			if req := s.takeRollout(v); req != nil {
				return step{next: rollingOut, roll: req, attempt: attempt}
			}
		case c := <-v.cmds:
			v.received(s, c)
			if c.kind == cmdStop {
				timer.Stop() // before the answer: the restart is cancelled when Stop returns
				s.update(v, "stopped on request; the restart is cancelled", func(vs *VM) { vs.State = StateStopped })
				c.reply <- result{changed: true}
				return step{next: idle, stopped: true}
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
		case <-v.kick:
			if req := s.takeRollout(v); req != nil {
				return step{next: rollingOut, roll: req}
			}
		case c := <-v.cmds:
			v.received(s, c)
			if c.kind == cmdStop {
				s.dropRollout(v, "stopped on request")
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
	snap := s.change(v, f)
	s.logChange(what, snap)
	s.tellState(snap)
}

// change changes the VM's state under the lock and returns it.
func (s *Supervisor) change(v *vm, f func(*VM)) VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := v.state.State
	f(&v.state)
	if v.state.State != before {
		v.state.Since = s.clock.Now()
	}
	return v.state
}

// tellState tells the hook of a change of the VM's state.
func (s *Supervisor) tellState(snap VM) {
	if s.hooks != nil && s.hooks.State != nil {
		s.hooks.State(snap)
	}
}

// logChange logs a change of the VM's state.
func (s *Supervisor) logChange(what string, snap VM) {
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
}
