package supervise_test

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// TestLivenessUnhealthyThenRestarted: a running VM is probed Interval
// after it runs and Interval after each probe; a probe that passes starts
// the count of failures over; Failures failures in a row make it
// unhealthy, with the probes' error, and stop it; under OnFailure it is
// launched again after the backoff although it exited 0, the stop's exit
// and the liveness error in its state.
func TestLivenessUnhealthyThenRestarted(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Second
	prober := newFakeProber()
	f := newFakeSupervisorWith(t, supervise.Config{Liveness: supervise.Liveness{Interval: interval, Failures: 3, Probe: prober}}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.OnFailure}); err != nil {
		t.Fatal(err)
	}
	run := f.launcher.next(t).succeed(100)
	refused := errors.New("connection refused")
	for i, pass := range []bool{false, false, true, false, false, false} {
		if d := f.clock.waitTimer(t); d != interval {
			t.Fatalf("probe %d due after %s; want %s", i+1, d, interval)
		}
		f.clock.advance(interval - time.Nanosecond)
		prober.none(t, "a nanosecond before the probe is due")
		f.clock.advance(time.Nanosecond)
		pr := prober.next(t)
		if pr.vm.Pid != 100 || pr.vm.State != supervise.StateRunning {
			t.Fatalf("probe %d of %+v; want the running pid 100", i+1, pr.vm)
		}
		if pass {
			pr.answer <- nil
			continue
		}
		pr.answer <- refused
		if i < 5 {
			continue
		}
		unhealthy := f.rec.wait(t, 1, "the unhealthy state", is(supervise.StateUnhealthy))
		if !errors.Is(unhealthy.Err, supervise.ErrUnhealthy) || !errors.Is(unhealthy.Err, refused) || unhealthy.Pid != 100 {
			t.Errorf("unhealthy: pid %d, error %v; want pid 100 and ErrUnhealthy wrapping the probe's error", unhealthy.Pid, unhealthy.Err)
		}
	}
	n := 0
	for _, vm := range f.rec.all() {
		if vm.State == supervise.StateUnhealthy {
			n++
		}
	}
	if n != 1 {
		t.Errorf("states %v; want one unhealthy, after the third failure in a row", stateNames(f.rec.all()))
	}
	vmretest.WaitClosed(t, run.Done(), "the unhealthy VM's stop")
	delay := f.clock.waitTimer(t)
	backoff := f.get(t, "vm")
	if backoff.State != supervise.StateBackoff || !errors.Is(backoff.Err, supervise.ErrUnhealthy) ||
		backoff.LastExit == nil || backoff.LastExit.Stage != launcher.StageTerm || delay != supervise.DefaultInitialDelay {
		t.Errorf("after the stop: %s in %s, error %v, last exit %v; want a backoff of %s, ErrUnhealthy and the stop's exit",
			backoff.State, delay, backoff.Err, backoff.LastExit, supervise.DefaultInitialDelay)
	}
	f.clock.advance(delay)
	f.launcher.next(t).succeed(101)
	again := f.rec.wait(t, 2, "the run after the restart", is(supervise.StateRunning))
	if again.Pid != 101 || again.Err != nil || again.Restarts != 1 {
		t.Errorf("after the restart: pid %d, error %v, %d restarts; want 101, none, 1", again.Pid, again.Err, again.Restarts)
	}
	if d := f.clock.waitTimer(t); d != interval {
		t.Errorf("the new run's first probe is due after %s; want %s", d, interval)
	}
}

// TestLivenessUnhealthyUnderNever: under the policy never, an unhealthy
// VM is stopped and stays failed, with the liveness error.
func TestLivenessUnhealthyUnderNever(t *testing.T) {
	t.Parallel()
	prober := newFakeProber()
	f := newFakeSupervisorWith(t, supervise.Config{Liveness: supervise.Liveness{Interval: time.Second, Failures: 1, Probe: prober}}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Never}); err != nil {
		t.Fatal(err)
	}
	f.launcher.next(t).succeed(100)
	f.clock.advance(f.clock.waitTimer(t))
	prober.next(t).answer <- context.DeadlineExceeded
	failed := f.rec.wait(t, 1, "the failed state", is(supervise.StateFailed))
	if !errors.Is(failed.Err, supervise.ErrUnhealthy) || !errors.Is(failed.Err, context.DeadlineExceeded) || failed.LastExit == nil {
		t.Errorf("failed: error %v, last exit %v; want ErrUnhealthy wrapping the timeout, and the stop's exit", failed.Err, failed.LastExit)
	}
	if p := f.clock.pending(); len(p) != 0 {
		t.Errorf("timers %v pending after the VM failed; want none", p)
	}
}

// TestLivenessOff: with a zero Interval no probe is ever due.
func TestLivenessOff(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisorWith(t, supervise.Config{Liveness: supervise.Liveness{Failures: 1, Probe: newFakeProber()}}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand}); err != nil {
		t.Fatal(err)
	}
	f.launcher.next(t).succeed(100)
	f.rec.wait(t, 1, "the run", is(supervise.StateRunning))
	// Stop returns once the watch of the run is over: a probe's timer
	// would have been made by then.
	if _, err := f.Stop(t.Context(), "vm"); err != nil {
		t.Fatal(err)
	}
	if n := f.clock.timersMade(); n != 0 {
		t.Errorf("%d timers made for a run without liveness probes", n)
	}
}

// TestLivenessStopAndRemoveDuringAProbe: a probe in flight when the VM is
// stopped or removed is cancelled and waited for.
func TestLivenessStopAndRemoveDuringAProbe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(*fakeSupervisor, context.Context) error
	}{
		{"stop", func(f *fakeSupervisor, ctx context.Context) error { _, err := f.Stop(ctx, "vm"); return err }},
		{"remove", func(f *fakeSupervisor, ctx context.Context) error { return f.Remove(ctx, "vm") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prober := newFakeProber()
			f := newFakeSupervisorWith(t, supervise.Config{Liveness: supervise.Liveness{Interval: time.Second, Probe: prober}}, 0.5)
			if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Always}); err != nil {
				t.Fatal(err)
			}
			f.launcher.next(t).succeed(100)
			f.clock.advance(f.clock.waitTimer(t))
			probe := prober.next(t) // never answered
			if err := tc.end(f, t.Context()); err != nil {
				t.Fatal(err)
			}
			if probe.ctx.Err() == nil {
				t.Error("the probe in flight was not cancelled")
			}
			if p := f.clock.pending(); len(p) != 0 {
				t.Errorf("timers %v pending; want none", p)
			}
		})
	}
}

// countingProbe is the health probe of `vmre run --check`
// (launcher.ProbeHealth, the Supervisor's default), counting the failures
// of each pid.
type countingProbe struct {
	mu       sync.Mutex
	failures map[int]int
	passed   chan int // a pid whose probe passed, if anyone waits
}

func (p *countingProbe) Probe(ctx context.Context, vm supervise.VM) error {
	_, err := launcher.ProbeHealth(ctx, vm.Addr)
	if err == nil {
		select {
		case p.passed <- vm.Pid:
		default:
		}
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures[vm.Pid]++
	return err
}

// TestLivenessRestartsAFrozenVM: a real VM stopped by SIGSTOP fails its
// health probes and becomes unhealthy after exactly Failures of them; its
// stop sends SIGCONT with SIGTERM, so it exits gracefully (code 0, its
// SIGTERM handler ran, no SIGKILL in a graceful timeout of 5 s), and it is
// launched again. An operator's Stop of a frozen VM is graceful as well.
func TestLivenessRestartsAFrozenVM(t *testing.T) {
	t.Parallel()
	probe := &countingProbe{failures: make(map[int]int), passed: make(chan int)}
	const failures = 2
	s, rec := newSupervisorWith(t, supervise.Config{
		Backoff:  supervise.Backoff{Initial: 50 * time.Millisecond},
		Liveness: supervise.Liveness{Interval: 100 * time.Millisecond, Failures: failures, Timeout: time.Second, Probe: probe},
	})
	if err := s.Add(supervise.Spec{Name: "vm", Command: helper("serve"), Policy: supervise.OnFailure}); err != nil {
		t.Fatal(err)
	}
	first := rec.wait(t, 1, "the first run", is(supervise.StateRunning))
	waitPassed(t, probe, first.Pid)
	freeze(t, first.Pid)

	unhealthy := rec.wait(t, 1, "the frozen VM unhealthy", func(vm supervise.VM) bool {
		return vm.State == supervise.StateUnhealthy && vm.Pid == first.Pid
	})
	if !errors.Is(unhealthy.Err, supervise.ErrUnhealthy) || !errors.Is(unhealthy.Err, context.DeadlineExceeded) {
		t.Errorf("unhealthy with %v; want ErrUnhealthy and the probes' timeout", unhealthy.Err)
	}
	second := rec.wait(t, 2, "the run after the restart", is(supervise.StateRunning))
	wantGone(t, first.Pid)
	probe.mu.Lock()
	if n := probe.failures[first.Pid]; n != failures {
		t.Errorf("%d failed probes of the frozen VM before its restart; want %d", n, failures)
	}
	probe.mu.Unlock()
	if second.Pid == first.Pid || second.LastExit == nil || second.LastExit.Code != 0 || second.LastExit.Stage != launcher.StageTerm {
		t.Errorf("after the restart: pid %d (was %d), last exit %v; want a new pid and exit code 0 after SIGTERM", second.Pid, first.Pid, second.LastExit)
	}

	waitPassed(t, probe, second.Pid)
	freeze(t, second.Pid)
	if _, err := s.Stop(t.Context(), "vm"); err != nil {
		t.Fatal(err)
	}
	wantGone(t, second.Pid)
	if vm, _ := s.Get("vm"); vm.State != supervise.StateStopped || vm.LastExit == nil || vm.LastExit.Code != 0 || vm.LastExit.Stage != launcher.StageTerm {
		t.Errorf("a frozen VM stopped on request: %s, %v; want stopped, exit code 0 after SIGTERM", vm.State, vm.LastExit)
	}
}

// waitPassed waits for a probe of pid that passes.
func waitPassed(t *testing.T, p *countingProbe, pid int) {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		select {
		case got := <-p.passed:
			if got == pid {
				return
			}
		case <-timeout.C:
			t.Fatalf("no probe of pid %d passed within %s", pid, vmretest.WaitTimeout)
		}
	}
}

// freeze stops pid with SIGSTOP and waits until the kernel shows it
// stopped.
func freeze(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Nothing tells when a process has stopped: poll its state.
	if !vmretest.Eventually(func() bool { return vmretest.ProcessState(pid) == 'T' }) {
		t.Fatalf("pid %d did not stop (state %q)", pid, vmretest.ProcessState(pid))
	}
}
