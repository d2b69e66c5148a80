package supervise_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// The rollouts' policy, driven with the fake clock, launcher and prober:
// no process runs and nothing sleeps.

const (
	probeEvery = time.Second
	minHealthy = 3 * time.Second
	deadline   = 20 * time.Second
)

// version is the Command of a fake version: its commands name it in
// their Args[0].
func version(name string) func() (*exec.Cmd, error) {
	return func() (*exec.Cmd, error) { return exec.Command(name), nil }
}

// rolloutOf is a rollout to the fake version name.
func rolloutOf(name string) supervise.Rollout {
	return supervise.Rollout{Version: name, Command: version(name), MinHealthy: minHealthy, HealthyDeadline: deadline}
}

// rollingSupervisor supervises the VM "vm" at version v1 under policy,
// with a fake prober, and returns it with v1's run, as pid 1.
func rollingSupervisor(t *testing.T, policy supervise.Policy) (*fakeSupervisor, *fakeProber, *fakeRun) {
	t.Helper()
	p := newFakeProber()
	f := newFakeSupervisorWith(t, supervise.Config{Rollout: supervise.RolloutConfig{Probe: p, Interval: probeEvery}}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: version("v1"), Version: "v1", Policy: policy}); err != nil {
		t.Fatal(err)
	}
	run := f.nextOf(t, "v1").succeed(1)
	f.rec.wait(t, 1, "running v1", func(vm supervise.VM) bool { return vm.State == supervise.StateRunning })
	return f, p, run
}

// start starts the rollout r of the VM and waits until it has begun.
func (f *fakeSupervisor) start(t *testing.T, r supervise.Rollout) {
	t.Helper()
	if _, err := f.Rollout("vm", r); err != nil {
		t.Fatal(err)
	}
	f.told(t, "started")
}

// nextOf returns the next launch, which must run version.
func (f *fakeSupervisor) nextOf(t *testing.T, version string) *fakeLaunch {
	t.Helper()
	l := f.launcher.next(t)
	if got := l.req.Cmd.Args[0]; got != version {
		t.Fatalf("a launch of %s; want %s", got, version)
	}
	return l
}

// told returns the next rollout event, which must be of kind. An end's
// hook comes just before the state that shows it: told returns once the
// state does.
func (f *fakeSupervisor) told(t *testing.T, kind string) supervise.RolloutEvent {
	t.Helper()
	ev := receive(t, f.rollouts, "rollout event")
	if ev.kind != kind {
		t.Fatalf("rollout event %s (%+v); want %s", ev.kind, ev.Rollout, kind)
	}
	if kind != "started" {
		f.rec.wait(t, 1, "the state of the rollout's end", func(vm supervise.VM) bool {
			return vm.Rollout != nil && vm.Rollout.ID == ev.Rollout.ID && vm.Rollout.Phase == ev.Rollout.Phase
		})
	}
	return ev.RolloutEvent
}

// probeOf answers the next probe with err, and checks that it probed the
// new version's run, pid.
func (p *fakeProber) probeOf(t *testing.T, pid int, err error) {
	t.Helper()
	pr := p.next(t)
	if pr.vm.Pid != pid || pr.vm.Addr == "" {
		t.Fatalf("a probe of pid %d at %q; want pid %d", pr.vm.Pid, pr.vm.Addr, pid)
	}
	pr.answer <- err
}

// healthy passes the probes of the new version, pid, until it has been
// healthy for minHealthy, advancing the clock between them.
func (f *fakeSupervisor) healthy(t *testing.T, p *fakeProber, pid int) {
	t.Helper()
	p.probeOf(t, pid, nil)
	for range minHealthy / probeEvery {
		f.clock.waitFor(t, probeEvery)
		f.clock.advance(probeEvery)
		p.probeOf(t, pid, nil)
	}
}

// TestRolloutReplace: the old run is stopped, the new version launched,
// probed until it has answered for its min-healthy time, and then it is
// the VM's version: a crash afterwards restarts it, not the old one.
func TestRolloutReplace(t *testing.T) {
	t.Parallel()
	f, p, old := rollingSupervisor(t, supervise.Always)
	id, err := f.Rollout("vm", rolloutOf("v2"))
	if err != nil {
		t.Fatal(err)
	}
	started := f.told(t, "started")
	if r := started.Rollout; r.ID != id || r.From != "v1" || r.To != "v2" || r.Strategy != supervise.Replace || r.Phase != supervise.RolloutInProgress {
		t.Fatalf("started: %+v", r)
	}
	l := f.nextOf(t, "v2")
	if exit, ok := old.Exit(); !ok || exit.Stage != launcher.StageTerm {
		t.Fatalf("the old run before the new one's launch: %v, ended %t; want stopped", exit, ok)
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateStarting || vm.Rollout == nil || !vm.Rollout.Deadline.Equal(f.clock.Now().Add(deadline)) {
		t.Fatalf("during the new version's launch: %s, rollout %+v", vm.State, vm.Rollout)
	}
	newRun := l.succeed(2)
	p.next(t).answer <- errors.New("not yet") // the supervisor has the new run
	if vm := f.get(t, "vm"); vm.State != supervise.StateRunning || vm.Pid != 2 || vm.Version != "v2" || vm.Rollout.Phase != supervise.RolloutInProgress {
		t.Fatalf("the new version handshook: %s pid %d version %s, rollout %s", vm.State, vm.Pid, vm.Version, vm.Rollout.Phase)
	}
	f.clock.waitFor(t, probeEvery)
	f.clock.advance(probeEvery)
	began := f.clock.Now()
	f.healthy(t, p, 2)
	healthy := f.told(t, "healthy").Rollout
	if healthy.Phase != supervise.RolloutSucceeded || healthy.Ended.Sub(began) != minHealthy || !healthy.HealthySince.Equal(began) {
		t.Fatalf("healthy: %+v; want succeeded %s after its first probe", healthy, minHealthy)
	}
	if vm := f.get(t, "vm"); vm.Version != "v2" || vm.Rollout.Phase != supervise.RolloutSucceeded {
		t.Fatalf("after the rollout: version %s, rollout %+v", vm.Version, vm.Rollout)
	}
	// The new version is the VM's: its crash restarts it.
	f.launcher.none(t, "after the rollout ended")
	newRun.end(launcher.Exit{Code: 1, Ran: time.Second})
	f.clock.advance(f.clock.waitTimer(t))
	f.nextOf(t, "v2").succeed(3)
}

// TestRolloutFailures: a new version that never handshakes, never answers
// its probe, or exits before its min-healthy time fails its rollout; the
// VM goes back to its old version, at once, and the cause says why.
func TestRolloutFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// fail makes the new version fail, from its launch l.
		fail func(t *testing.T, f *fakeSupervisor, p *fakeProber, l *fakeLaunch)
		want string // in the cause
		is   error
	}{
		{"no handshake by the deadline", func(t *testing.T, f *fakeSupervisor, _ *fakeProber, l *fakeLaunch) {
			f.clock.advance(deadline)
			<-l.ctx.Done()
		}, "no handshake within the healthy deadline of 20s", supervise.ErrNotHealthy},
		{"handshaken as the deadline fires", func(t *testing.T, f *fakeSupervisor, _ *fakeProber, l *fakeLaunch) {
			hold, held := make(chan struct{}), make(chan struct{})
			l.answer <- fakeAnswer{run: &fakeRun{pid: 2, done: make(chan struct{})}, hold: hold, held: held}
			<-held
			f.clock.advance(deadline)
			<-l.ctx.Done()
			close(hold) // the launch succeeds after its deadline fired
		}, "not healthy within the healthy deadline of 20s", supervise.ErrNotHealthy},
		{"exits before its handshake", func(t *testing.T, f *fakeSupervisor, _ *fakeProber, l *fakeLaunch) {
			l.fail(&launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, VM: "vm", Err: vmre.ErrProcessNotFound,
				Exit: &launcher.Exit{Code: 1, Ran: 5 * time.Millisecond}, Stderr: []string{"cannot open the chain"}})
		}, "exit code 1 after 5ms, before its handshake; its last stderr line: cannot open the chain", vmre.ErrProcessNotFound},
		{"unhealthy until the deadline", func(t *testing.T, f *fakeSupervisor, p *fakeProber, l *fakeLaunch) {
			l.succeed(2)
			for range deadline / probeEvery {
				p.probeOf(t, 2, errors.New("NOT_SERVING"))
				f.clock.waitFor(t, probeEvery)
				f.clock.advance(probeEvery)
			}
		}, "not healthy within the healthy deadline of 20s: the last health probe: NOT_SERVING", supervise.ErrNotHealthy},
		{"exits during its min-healthy time", func(t *testing.T, f *fakeSupervisor, p *fakeProber, l *fakeLaunch) {
			run := l.succeed(2)
			p.probeOf(t, 2, nil)
			f.clock.waitFor(t, probeEvery)
			f.clock.advance(probeEvery)
			p.probeOf(t, 2, nil)
			f.clock.waitFor(t, probeEvery)
			run.end(launcher.Exit{Code: 1, Ran: 2 * time.Second})
		}, "exit code 1 after 2s, before it was healthy for 3s", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, p, _ := rollingSupervisor(t, supervise.OnFailure)
			if _, err := f.Rollout("vm", rolloutOf("v2")); err != nil {
				t.Fatal(err)
			}
			f.told(t, "started")
			tc.fail(t, f, p, f.nextOf(t, "v2"))
			ev := f.told(t, "reverted").Rollout
			if ev.Phase != supervise.RolloutReverted || ev.Err == nil || !strings.Contains(ev.Err.Error(), tc.want) {
				t.Fatalf("reverted: %s, %v; want the cause %q", ev.Phase, ev.Err, tc.want)
			}
			if _, ok := errors.AsType[*supervise.RolloutError](ev.Err); !ok || tc.is != nil && !errors.Is(ev.Err, tc.is) {
				t.Errorf("the cause %v is not a *RolloutError matching %v", ev.Err, tc.is)
			}
			// The old version, at once.
			f.nextOf(t, "v1").succeed(3)
			vm := f.rec.wait(t, 1, "v1 again", func(vm supervise.VM) bool { return vm.State == supervise.StateRunning && vm.Pid == 3 })
			if vm.Version != "v1" || vm.Rollout.Phase != supervise.RolloutReverted {
				t.Errorf("after the revert: version %s, rollout %s", vm.Version, vm.Rollout.Phase)
			}
			if n := len(f.clock.pending()); n != 0 {
				t.Errorf("%d timers left after the rollout", n)
			}
			// A new rollout may begin.
			if _, err := f.Rollout("vm", rolloutOf("v3")); err != nil {
				t.Errorf("a rollout after a revert: %v", err)
			}
		})
	}
}

// TestRolloutProbeFailureStartsOver: a probe that fails during the
// min-healthy time starts it over from the next probe that passes.
func TestRolloutProbeFailureStartsOver(t *testing.T) {
	t.Parallel()
	f, p, _ := rollingSupervisor(t, supervise.Always)
	f.start(t, rolloutOf("v2"))
	f.nextOf(t, "v2").succeed(2)
	p.probeOf(t, 2, nil)
	f.clock.waitFor(t, probeEvery)
	f.clock.advance(probeEvery)
	p.probeOf(t, 2, errors.New("a blip"))
	f.clock.waitFor(t, probeEvery)
	if vm := f.get(t, "vm"); !vm.Rollout.HealthySince.IsZero() {
		t.Fatalf("healthy since %s after a failed probe", vm.Rollout.HealthySince)
	}
	f.clock.advance(probeEvery)
	again := f.clock.Now()
	f.healthy(t, p, 2)
	if ev := f.told(t, "healthy").Rollout; !ev.HealthySince.Equal(again) || ev.Ended.Sub(again) != minHealthy {
		t.Errorf("healthy since %s, ended %s; want since %s, ended %s later", ev.HealthySince, ev.Ended, again, minHealthy)
	}
}

// TestRolloutNoAutoRevert: a failed version stays: one that runs,
// unhealthy, runs on; one that exited is launched again by its policy
// (its crash loop), never the old one.
func TestRolloutNoAutoRevert(t *testing.T) {
	t.Parallel()
	t.Run("unhealthy", func(t *testing.T) {
		t.Parallel()
		f, p, _ := rollingSupervisor(t, supervise.OnFailure)
		r := rolloutOf("v2")
		r.NoAutoRevert = true
		f.start(t, r)
		run := f.nextOf(t, "v2").succeed(2)
		for range deadline / probeEvery {
			p.probeOf(t, 2, errors.New("NOT_SERVING"))
			f.clock.waitFor(t, probeEvery)
			f.clock.advance(probeEvery)
		}
		if ev := f.told(t, "failed").Rollout; ev.Phase != supervise.RolloutFailed || !errors.Is(ev.Err, supervise.ErrNotHealthy) {
			t.Fatalf("failed: %s %v", ev.Phase, ev.Err)
		}
		if _, ended := run.Exit(); ended {
			t.Error("the failed version was stopped under NoAutoRevert")
		}
		if vm := f.get(t, "vm"); vm.State != supervise.StateRunning || vm.Pid != 2 || vm.Version != "v2" {
			t.Errorf("after the failed rollout: %s pid %d version %s; want v2 running on", vm.State, vm.Pid, vm.Version)
		}
		f.launcher.none(t, "after a failed rollout whose version runs on")
	})
	t.Run("exited", func(t *testing.T) {
		t.Parallel()
		f, _, _ := rollingSupervisor(t, supervise.OnFailure)
		r := rolloutOf("v2")
		r.NoAutoRevert = true
		f.start(t, r)
		f.nextOf(t, "v2").succeed(2).end(launcher.Exit{Code: 1, Ran: time.Second})
		f.told(t, "failed")
		vm := f.rec.wait(t, 1, "a backoff", func(vm supervise.VM) bool { return vm.State == supervise.StateBackoff })
		if vm.LastExit == nil || vm.LastExit.Code != 1 {
			t.Errorf("the backoff's last exit: %v", vm.LastExit)
		}
		f.clock.advance(f.clock.waitTimer(t))
		f.nextOf(t, "v2") // its crash loop, not the old version
	})
}

// TestRolloutStartFirst: the new version runs beside the old one, which
// the VM shows and nobody stops, until the new one is healthy; then the
// VM switches to it and stops the old. A new version that fails is
// stopped, and the old run goes on untouched.
func TestRolloutStartFirst(t *testing.T) {
	t.Parallel()
	t.Run("healthy", func(t *testing.T) {
		t.Parallel()
		f, p, old := rollingSupervisor(t, supervise.Always)
		r := rolloutOf("v2")
		r.Strategy = supervise.StartFirst
		f.start(t, r)
		f.nextOf(t, "v2").succeed(2)
		p.probeOf(t, 2, nil)
		for range minHealthy / probeEvery {
			if vm := f.get(t, "vm"); vm.Pid != 1 || vm.Version != "v1" || vm.State != supervise.StateRunning {
				t.Fatalf("before the new version is healthy: %s pid %d version %s; want the old run", vm.State, vm.Pid, vm.Version)
			}
			if _, ended := old.Exit(); ended {
				t.Fatal("the old run stopped before the new version was healthy")
			}
			f.clock.waitFor(t, probeEvery)
			f.clock.advance(probeEvery)
			p.probeOf(t, 2, nil)
		}
		f.told(t, "healthy")
		if exit, ended := old.Exit(); !ended || exit.Stage != launcher.StageTerm {
			t.Errorf("the old run after the switch: %v, ended %t; want stopped", exit, ended)
		}
		// The switch came before the old run's stop.
		switched := f.rec.wait(t, 1, "the switch", func(vm supervise.VM) bool { return vm.Pid == 2 })
		if switched.Version != "v2" || switched.State != supervise.StateRunning {
			t.Errorf("the switch: %s version %s", switched.State, switched.Version)
		}
		if vm := f.get(t, "vm"); vm.Pid != 2 || vm.LastExit == nil || vm.LastExit.Stage != launcher.StageTerm {
			t.Errorf("after the rollout: pid %d, last exit %v", vm.Pid, vm.LastExit)
		}
	})
	t.Run("failed", func(t *testing.T) {
		t.Parallel()
		f, _, old := rollingSupervisor(t, supervise.Always)
		r := rolloutOf("v2")
		r.Strategy = supervise.StartFirst
		f.start(t, r)
		f.nextOf(t, "v2").succeed(2).end(launcher.Exit{Code: 2, Ran: time.Second})
		f.told(t, "reverted")
		if _, ended := old.Exit(); ended {
			t.Error("a failed start-first rollout stopped the old run")
		}
		if vm := f.get(t, "vm"); vm.Pid != 1 || vm.State != supervise.StateRunning || vm.Version != "v1" {
			t.Errorf("after the failed rollout: %s pid %d version %s; want the old run", vm.State, vm.Pid, vm.Version)
		}
		f.launcher.none(t, "after a failed start-first rollout")
		// The old run is watched as before: its crash restarts it.
		old.end(launcher.Exit{Code: 1, Ran: time.Second})
		f.clock.advance(f.clock.waitTimer(t))
		f.nextOf(t, "v1")
	})
}

// TestRolloutInterrupted: an operator's Stop during a rollout stops both
// versions and keeps the old one as the VM's; Start launches it. A Stop
// given before a requested rollout began ends it too.
func TestRolloutInterrupted(t *testing.T) {
	t.Parallel()
	f, p, old := rollingSupervisor(t, supervise.Always)
	r := rolloutOf("v2")
	r.Strategy = supervise.StartFirst
	f.start(t, r)
	next := f.nextOf(t, "v2").succeed(2)
	p.next(t) // the supervisor has the new run; its probe is in flight
	if changed, err := f.Stop(context.Background(), "vm"); err != nil || !changed {
		t.Fatalf("Stop: %t %v", changed, err)
	}
	if ev := f.told(t, "failed").Rollout; ev.Phase != supervise.RolloutInterrupted {
		t.Fatalf("the rollout after a Stop: %s", ev.Phase)
	}
	for pid, run := range map[int]*fakeRun{1: old, 2: next} {
		if _, ended := run.Exit(); !ended {
			t.Errorf("pid %d runs after the Stop", pid)
		}
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateStopped {
		t.Fatalf("after the Stop: %s", vm.State)
	}
	go f.Start(context.Background(), "vm")
	f.nextOf(t, "v1").succeed(3)
}

// TestRolloutFromBackoff: a VM that waits in a backoff is launched at its
// new version at once.
func TestRolloutFromBackoff(t *testing.T) {
	t.Parallel()
	f, p, old := rollingSupervisor(t, supervise.Always)
	old.end(launcher.Exit{Code: 1, Ran: time.Second})
	f.clock.waitTimer(t)
	f.start(t, rolloutOf("v2"))
	f.nextOf(t, "v2").succeed(2)
	f.healthy(t, p, 2)
	f.told(t, "healthy")
}

// TestRolloutRefused: a rollout the Supervisor cannot carry out is
// refused and changes nothing.
func TestRolloutRefused(t *testing.T) {
	t.Parallel()
	f, _, _ := rollingSupervisor(t, supervise.Always)
	if err := f.AddRemote(supervise.RemoteSpec{Name: "far", Admit: func(bool) {}, EndSession: func() {}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Rollout("vm", rolloutOf("v2")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		vm   string
		r    supervise.Rollout
		is   error
	}{
		{"in progress", "vm", rolloutOf("v3"), supervise.ErrRolloutInProgress},
		{"unknown", "nope", rolloutOf("v3"), supervise.ErrUnknownVM},
		{"no command", "vm", supervise.Rollout{Version: "v3"}, vmre.ErrInvalidConfig},
		{"a bad strategy", "vm", supervise.Rollout{Version: "v3", Command: version("v3"), Strategy: 7}, vmre.ErrInvalidConfig},
		{"remote", "far", rolloutOf("v3"), vmre.ErrInvalidConfig},
	} {
		if _, err := f.Rollout(tc.vm, tc.r); !errors.Is(err, tc.is) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.is)
		}
	}
	f.Close(context.Background())
	if _, err := f.Rollout("vm", rolloutOf("v4")); !errors.Is(err, supervise.ErrClosed) {
		t.Errorf("after Close: %v; want ErrClosed", err)
	}
}

func TestParseStrategy(t *testing.T) {
	t.Parallel()
	for _, s := range []supervise.Strategy{supervise.Replace, supervise.StartFirst} {
		if got, err := supervise.ParseStrategy(s.String()); err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := supervise.ParseStrategy("canary"); err == nil || !strings.Contains(err.Error(), "replace or start-first") {
		t.Errorf("ParseStrategy(canary): %v", err)
	}
}

// TestRolloutErrorEscapes: a failed version's last stderr line is shown
// with its control characters escaped: a VM's bytes do not drive the
// operator's terminal.
func TestRolloutErrorEscapes(t *testing.T) {
	t.Parallel()
	err := &supervise.RolloutError{Version: "v2", Exit: &launcher.Exit{Code: 1, Ran: time.Second},
		Stderr: []string{"\x1b[2Jfatal: bad\rdatabase é"}, Err: errors.New("before it was healthy for 3s")}
	want := `exit code 1 after 1s, before it was healthy for 3s; its last stderr line: \x1b[2Jfatal: bad\rdatabase é`
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q\nwant      %q", got, want)
	}
}
