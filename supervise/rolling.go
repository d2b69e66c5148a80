package supervise

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vmre/vmre/launcher"
)

// errLaunchDeadline is the cause that abandons a new version's launch at
// its rollout's deadline.
var errLaunchDeadline = errors.New("the rollout's healthy deadline passed")

// rolling is a rollout in progress. The VM's goroutine owns it: it
// launches the new version, probes it, watches both runs, takes the
// operators' commands, and ends it one way or the other.
type rolling struct {
	probing
	s       *Supervisor
	v       *vm
	r       Rollout
	st      RolloutStatus
	attempt int

	old      Run   // the old version's run while it runs beside (StartFirst)
	next     Run   // the new version's run, once launched, until it ends
	ready    Ready // the new version's handshake
	switched bool  // the VM shows the new run
	deadline Timer
	lastErr  error // the last probe's error, since the last pass
}

// rollOut carries out the rollout prev.roll of the VM, whose run prev.run
// (nil when it did not run) is the old version's, and returns where the
// VM's goroutine goes next: watching the run of the version that won.
func (s *Supervisor) rollOut(v *vm, prev step) step {
	req := prev.roll
	ro := &rolling{probing: newProbing(), s: s, v: v, r: req.r, old: prev.run, attempt: prev.attempt}
	ro.st = RolloutStatus{ID: req.id, Phase: RolloutInProgress, Strategy: req.r.Strategy, MinHealthy: req.r.MinHealthy,
		HealthyDeadline: req.r.HealthyDeadline, From: s.spec(v).Version, To: req.r.Version, Started: s.clock.Now()}
	defer ro.probing.stop()
	ro.show("rolling out", nil)
	s.tellRollout(v, ro.st)

	var oldExit *launcher.Exit
	if ro.old != nil && ro.r.Strategy == Replace {
		old := ro.old
		ro.old = nil
		s.stopRuns(v, nil, old)
		exit, _ := old.Exit()
		oldExit = &exit
		s.keepStderr(v, old)
		if v.ctx.Err() != nil {
			return ro.interrupt(nil, s.quitting(v), func(vs *VM) { vs.State, vs.LastExit = StateStopped, oldExit }, step{next: quit})
		}
	}

	ro.deadline = s.clock.NewTimer(ro.r.HealthyDeadline)
	defer ro.deadline.Stop()
	ro.st.Deadline = s.clock.Now().Add(ro.r.HealthyDeadline)
	st := ro.st
	l := s.launchWith(v, launchSpec{
		what: "rolling out: launching " + cmp.Or(short(ro.r.Version), "the new version"), command: ro.r.Command, version: ro.r.Version,
		exit: oldExit, beside: ro.old != nil, deadline: ro.deadline,
		also: func(vs *VM) { vs.Rollout = &st },
		onReady: func(r Ready) {
			ro.ready = r
			if ro.old == nil { // Replace: the VM runs the new run, not yet healthy
				ro.switched = true
				s.running(v, r, ro.r.Version)
			}
		},
	})
	switch {
	case l.err == nil && l.deadline:
		// The handshake completed as the deadline fired, which the launch
		// watch took: the loop below would not see it.
		ro.next = l.run
		return ro.fail(&RolloutError{Version: ro.r.Version, Err: fmt.Errorf("%w within the healthy deadline of %s", ErrNotHealthy, ro.r.HealthyDeadline)})
	case l.err == nil:
		ro.next = l.run
		ro.startProbe()
	case v.ctx.Err() != nil:
		return ro.interrupt(nil, s.quitting(v), func(vs *VM) { vs.State = StateStopped }, step{next: quit})
	case l.deadline:
		return ro.fail(&RolloutError{Version: ro.r.Version, Err: fmt.Errorf("%w: no handshake within the healthy deadline of %s", ErrNotHealthy, ro.r.HealthyDeadline)})
	case l.interrupted:
		// An operator's Stop or Restart abandoned the launch: its command
		// comes next, and the loop below takes it.
	default:
		return ro.fail(&RolloutError{Version: ro.r.Version, Err: l.err})
	}
	return ro.loop()
}

// loop waits for what ends the rollout: the new version healthy, failed or
// late, or an operator's command.
func (ro *rolling) loop() step {
	s, v := ro.s, ro.v
	for {
		select {
		case <-done(ro.next):
			exit, _ := ro.next.Exit()
			stderr := ro.next.LastStderr()
			s.keepStderr(v, ro.next)
			ro.next = nil
			return ro.fail(&RolloutError{Version: ro.r.Version, Exit: &exit, Stderr: stderr,
				Err: fmt.Errorf("before it was healthy for %s", ro.r.MinHealthy)})
		case <-done(ro.old):
			exit, _ := ro.old.Exit()
			s.keepStderr(v, ro.old)
			ro.old = nil
			ro.showChange("the old version ended during the rollout", func(vs *VM) {
				vs.LastExit = &exit
				if ro.next != nil {
					ro.switched = true
					runs(vs, ro.ready, ro.r.Version)
				} else {
					vs.State = StateStarting
				}
			})
		case <-ro.deadline.C():
			err := fmt.Errorf("%w within the healthy deadline of %s", ErrNotHealthy, ro.r.HealthyDeadline)
			if ro.lastErr != nil {
				err = fmt.Errorf("%w: the last health probe: %w", err, ro.lastErr)
			}
			return ro.fail(&RolloutError{Version: ro.r.Version, Err: err})
		case <-ro.due():
			ro.startProbe()
		case err := <-ro.results():
			if next, ended := ro.probed(err); ended {
				return next
			}
		case c := <-v.cmds:
			v.received(s, c)
			switch c.kind {
			case cmdStart:
				c.reply <- result{} // it runs, or is being launched
			case cmdStop:
				return ro.interrupt(c.ctx.Done(), "stopped on request", func(vs *VM) { vs.State = StateStopped },
					step{next: idle, stopped: true}, func() { c.reply <- result{changed: true} })
			case cmdRestart:
				return ro.interrupt(c.ctx.Done(), "restarted on request", nil, step{next: launchNow, waiting: &c})
			}
		case <-v.ctx.Done():
			return ro.interrupt(nil, s.quitting(v), func(vs *VM) { vs.State = StateStopped }, step{next: quit})
		}
	}
}

// done is the Done channel of r, or nil for no run.
func done(r Run) <-chan struct{} {
	if r == nil {
		return nil
	}
	return r.Done()
}

// startProbe probes the new version on a goroutine of its own.
func (ro *rolling) startProbe() {
	vm := VM{Name: ro.s.spec(ro.v).Name, State: StateRunning, Pid: ro.ready.Pid, Addr: ro.ready.Addr,
		ProtocolVersion: ro.ready.ProtocolVersion, Version: ro.r.Version}
	ro.start(ro.s.rollout.Probe, vm, probeTimeout)
}

// probeTimeout bounds a health probe of a rollout.
const probeTimeout = 5 * time.Second

// probed takes a probe's outcome: the new version is healthy once its
// probes have passed for MinHealthy; a failure starts that over.
func (ro *rolling) probed(err error) (step, bool) {
	ro.took()
	s := ro.s
	now := s.clock.Now()
	if err != nil {
		ro.lastErr = err
		if !ro.st.HealthySince.IsZero() {
			ro.st.HealthySince = time.Time{}
			ro.show("rolling out: the health probe failed; the new version must be healthy again for its min-healthy time",
				[]slog.Attr{slog.String("error", err.Error())})
		}
		ro.schedule(s.clock, s.rollout.Interval)
		return step{}, false
	}
	ro.lastErr = nil
	if ro.st.HealthySince.IsZero() {
		ro.st.HealthySince = now
		ro.show("rolling out: the new version answers its health probe", []slog.Attr{slog.Duration("min_healthy", ro.r.MinHealthy)})
	}
	left := ro.r.MinHealthy - now.Sub(ro.st.HealthySince)
	if left <= 0 {
		return ro.succeed(), true
	}
	ro.schedule(s.clock, min(s.rollout.Interval, left))
	return step{}, false
}

// succeed makes the new version the VM's: under StartFirst the VM
// switches to the new run, then the old one is stopped.
func (ro *rolling) succeed() step {
	s, v := ro.s, ro.v
	ro.probing.stop()
	var oldExit *launcher.Exit
	if old := ro.old; old != nil {
		ro.adopt()
		ro.show("rolling out: the new version is healthy; the VM switches to it and stops the old run", nil)
		ro.old = nil
		s.stopRuns(v, nil, old)
		exit, _ := old.Exit()
		oldExit = &exit
		s.keepStderr(v, old)
	}
	ro.adopt()
	ro.st.Phase, ro.st.Ended = RolloutSucceeded, s.clock.Now()
	ro.finish("rolled out: the new version is healthy", func(vs *VM) {
		if oldExit != nil {
			vs.LastExit = oldExit
		}
	})
	return s.watch(v, ro.next, 0)
}

// adopt makes the new version the VM's, and shows its run (the change is
// told with the next).
func (ro *rolling) adopt() {
	s, v := ro.s, ro.v
	s.mu.Lock()
	v.spec.Command, v.spec.Version = ro.r.Command, ro.r.Version
	s.mu.Unlock()
	if !ro.switched && ro.next != nil {
		ro.switched = true
		s.change(v, func(vs *VM) { runs(vs, ro.ready, ro.r.Version) })
	}
}

// fail ends a rollout whose new version failed: the VM goes back to its
// old version, or under NoAutoRevert keeps the new one.
func (ro *rolling) fail(rerr *RolloutError) step {
	s, v := ro.s, ro.v
	ro.probing.stop()
	ro.st.Err, ro.st.Ended = rerr, s.clock.Now()
	failed := func(vs *VM) {
		if rerr.Exit != nil {
			vs.LastExit, vs.Stderr = rerr.Exit, rerr.Stderr
		} else if le, ok := errors.AsType[*launcher.LaunchError](rerr.Err); ok {
			vs.LastExit, vs.Stderr = le.Exit, le.Stderr
		}
	}
	if ro.r.NoAutoRevert {
		ro.st.Phase = RolloutFailed
		ro.adopt()
		if old := ro.old; old != nil {
			ro.old = nil
			s.stopRuns(v, nil, old)
		}
		ro.finish("rollout failed; the new version stays (no auto-revert)", failed)
		if ro.next != nil { // it runs on, unhealthy, for whoever debugs it
			return s.watch(v, ro.next, ro.attempt)
		}
		return s.afterFailure(v, rerr, ro.attempt)
	}
	ro.st.Phase = RolloutReverted
	if next := ro.next; next != nil {
		ro.next = nil
		s.stopRuns(v, nil, next)
		exit, _ := next.Exit()
		s.keepStderr(v, next)
		stopped := failed
		failed = func(vs *VM) { // how it ended: stopped by the revert
			stopped(vs)
			vs.LastExit = &exit
		}
	}
	if old := ro.old; old != nil { // StartFirst: the old run never stopped
		ro.finish("rolled back: the old version runs on", failed)
		return s.watch(v, old, ro.attempt)
	}
	ro.finish("rolled back: launching the old version again", failed)
	return step{next: launchNow, attempt: ro.attempt}
}

// afterFailure is where a VM goes whose new version failed and stays,
// as after any failed launch or run of it: its policy decides.
func (s *Supervisor) afterFailure(v *vm, rerr *RolloutError, attempt int) step {
	if rerr.Exit != nil && !errors.As(rerr.Err, new(*launcher.LaunchError)) { // it ran, then exited
		if !s.spec(v).Policy.restarts(*rerr.Exit) {
			s.update(v, "exited; the policy does not restart it", func(vs *VM) { vs.State = StateExited })
			return step{next: idle}
		}
		return step{next: backoffThenLaunch, attempt: attempt + 1, exit: rerr.Exit}
	}
	if permanent(rerr.Err) || s.spec(v).Policy == Never {
		s.update(v, "launch failed; not retried", func(vs *VM) { vs.State = StateFailed; failedAttempt(vs, rerr.Err) })
		return step{next: idle}
	}
	return step{next: backoffThenLaunch, attempt: attempt + 1, err: rerr.Err}
}

// interrupt ends the rollout as an operator's command (cutAt cuts the
// grace of the stops short; nil: the VM's end does) or the VM's end asks:
// both runs stop, the VM keeps its old version, f changes its state, and
// reply, if any, answers the command.
func (ro *rolling) interrupt(cutAt <-chan struct{}, why string, f func(*VM), next step, reply ...func()) step {
	s, v := ro.s, ro.v
	ro.probing.stop()
	var runs []Run
	for _, r := range []Run{ro.old, ro.next} {
		if r != nil {
			runs = append(runs, r)
		}
	}
	ro.old, ro.next = nil, nil
	s.stopRuns(v, cutAt, runs...)
	var last *launcher.Exit
	for _, r := range runs {
		exit, _ := r.Exit()
		last = &exit
		s.keepStderr(v, r)
	}
	ro.st.Phase, ro.st.Err, ro.st.Ended = RolloutInterrupted, errors.New(why), s.clock.Now()
	ro.finish("rollout interrupted: "+why, func(vs *VM) {
		if last != nil {
			vs.LastExit = last
		}
		if f != nil {
			f(vs)
		}
	})
	for _, r := range reply {
		r()
	}
	if next.next == launchNow {
		next.exit = last
	}
	return next
}

// finish ends the rollout: the VM may take a new one, the hook hears how
// this one ended, then the VM's state shows it, with f's change, so that
// whoever sees it ended finds what the hook recorded.
func (ro *rolling) finish(what string, f func(*VM)) {
	ro.probing.stop()
	if ro.deadline != nil {
		ro.deadline.Stop()
	}
	ro.s.endRollout(ro.v)
	ro.s.tellRollout(ro.v, ro.st)
	ro.showChange(what, f)
}

// show records the rollout's status in the VM's state, with a record.
func (ro *rolling) show(what string, attrs []slog.Attr) {
	ro.showChangeAttrs(what, attrs, nil)
}

// showChange records the rollout's status with f's change of the VM's
// state.
func (ro *rolling) showChange(what string, f func(*VM)) { ro.showChangeAttrs(what, nil, f) }

func (ro *rolling) showChangeAttrs(what string, attrs []slog.Attr, f func(*VM)) {
	st := ro.st
	snap := ro.s.change(ro.v, func(vs *VM) {
		vs.Rollout = &st
		if f != nil {
			f(vs)
		}
	})
	level := slog.LevelInfo
	switch st.Phase {
	case RolloutReverted, RolloutInterrupted:
		level = slog.LevelWarn
	case RolloutFailed:
		level = slog.LevelError
	}
	attrs = append([]slog.Attr{slog.String("vm", snap.Name), slog.String("state", snap.State.String()),
		slog.String("strategy", st.Strategy.String()), slog.String("from", short(st.From)), slog.String("to", short(st.To))}, attrs...)
	if snap.State == StateRunning {
		attrs = append(attrs, slog.Int("pid", snap.Pid))
	}
	if st.Err != nil {
		attrs = append(attrs, slog.String("error", st.Err.Error()))
	}
	if !st.Ended.IsZero() {
		attrs = append(attrs, slog.Duration("elapsed", st.Ended.Sub(st.Started).Round(time.Millisecond)))
	}
	ro.s.log.LogAttrs(context.Background(), level, what, attrs...)
	ro.s.tellState(snap)
}

// stopRuns stops runs and waits until all have ended. Each gets its
// graceful timeout, cut short when cutAt closes (nil: never), or when the
// VM is removed or the Supervisor closes and their context ends.
func (s *Supervisor) stopRuns(v *vm, cutAt <-chan struct{}, runs ...Run) {
	grace, cut := context.WithCancel(context.Background())
	defer cut()
	for _, r := range runs {
		r.Stop(grace)
	}
	quit := v.ctx.Done()
	for _, r := range runs {
		for ended := false; !ended; {
			select {
			case <-r.Done():
				ended = true
			case <-cutAt:
				cut()
				cutAt = nil
			case <-quit:
				quit = nil
				if cutAt == nil {
					cutAt = s.stopContext(v).Done()
				}
			}
		}
	}
}

// short is a version as logs show it: a digest's first 12 digits.
func short(version string) string {
	if len(version) > 12 {
		return version[:12]
	}
	return version
}
