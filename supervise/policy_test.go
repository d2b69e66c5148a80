package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// crash runs the next launch and makes it exit with code after ran, then
// returns the delay of the backoff that follows.
func (f *fakeSupervisor) crash(t *testing.T, pid, code int, ran time.Duration) time.Duration {
	t.Helper()
	run := f.launcher.next(t).succeed(pid)
	run.end(launcher.Exit{Code: code, Ran: ran})
	return f.clock.waitTimer(t)
}

// TestBackoffSequenceAndCap: the delays double from Initial up to Max, and
// the jitter never takes one beyond Max: drawn at the top of its range,
// the delay at the cap is Max itself (a 60s cap once saw 62.09s); drawn at
// the bottom, 90% of it. Each delay is waited in full, and the state turns
// from backoff to crashloop when the delay reaches the cap.
func TestBackoffSequenceAndCap(t *testing.T) {
	t.Parallel()
	bases := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} // seconds, under the defaults
	for _, tc := range []struct {
		name string
		r    float64
		want func(base time.Duration) time.Duration
	}{
		{"jitter at the top", 1, func(b time.Duration) time.Duration { return min(b+b/10, supervise.DefaultMaxDelay) }},
		{"jitter at the bottom", 0, func(b time.Duration) time.Duration { return b - b/10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSupervisor(t, supervise.Backoff{}, tc.r)
			if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.OnFailure}); err != nil {
				t.Fatal(err)
			}
			for i, base := range bases {
				base *= time.Second
				want := tc.want(base)
				delay := f.crash(t, 100+i, 1, time.Second)
				vm := f.get(t, "vm")
				wantState := supervise.StateBackoff
				if base >= supervise.DefaultMaxDelay {
					wantState = supervise.StateCrashLoop
				}
				if delay != want || vm.Delay != want || vm.Attempt != i+1 || vm.State != wantState {
					t.Fatalf("attempt %d: timer %s, state %s, delay %s, attempt %d; want %s, delay %s",
						i+1, delay, vm.State, vm.Delay, vm.Attempt, wantState, want)
				}
				if delay > supervise.DefaultMaxDelay {
					t.Fatalf("attempt %d: a delay of %s beyond the cap of %s", i+1, delay, supervise.DefaultMaxDelay)
				}
				if now := f.clock.Now(); !vm.NextAttempt.Equal(now.Add(delay)) || !vm.Since.Equal(now) {
					t.Errorf("attempt %d: since %s, next attempt at %s; want now (%s) and now + %s", i+1, vm.Since, vm.NextAttempt, now, delay)
				}
				f.clock.advance(delay - time.Nanosecond)
				f.launcher.none(t, "a nanosecond before the delay's end")
				f.clock.advance(time.Nanosecond)
			}
			// The last delay's end launches again: once that launch is
			// asked for, the counts are settled.
			f.launcher.next(t)
			if vm := f.get(t, "vm"); vm.Restarts != len(bases) || vm.Launches != len(bases)+1 {
				t.Errorf("%d launches, %d restarts; want %d, %d", vm.Launches, vm.Restarts, len(bases)+1, len(bases))
			}
		})
	}
}

// TestBackoffResetsAfterALongRun: a VM that ran ResetAfter before it
// crashed starts its backoff over from Initial; one that ran less goes on
// doubling.
func TestBackoffResetsAfterALongRun(t *testing.T) {
	t.Parallel()
	backoff := supervise.Backoff{Initial: time.Second, Max: time.Minute, ResetAfter: 10 * time.Minute}
	f := newFakeSupervisor(t, backoff, 0.5) // the middle of the jitter's range: the base itself
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		ran     time.Duration
		attempt int
		delay   time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{backoff.ResetAfter - time.Nanosecond, 3, 4 * time.Second},
		{backoff.ResetAfter, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
	} {
		delay := f.crash(t, 100+i, 0, tc.ran)
		if vm := f.get(t, "vm"); vm.Attempt != tc.attempt || delay != tc.delay {
			t.Fatalf("after a run of %s: attempt %d, delay %s; want attempt %d, delay %s", tc.ran, vm.Attempt, delay, tc.attempt, tc.delay)
		}
		f.clock.advance(delay)
	}
}

// TestCrashLoopThreshold: the state is crashloop from the first failure
// whose delay reached the cap, but never on the first failure, even when
// Initial is the cap.
func TestCrashLoopThreshold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		backoff supervise.Backoff
		want    []supervise.State
	}{
		{"cap at four times the initial delay", supervise.Backoff{Initial: time.Second, Max: 4 * time.Second},
			[]supervise.State{supervise.StateBackoff, supervise.StateBackoff, supervise.StateCrashLoop, supervise.StateCrashLoop}},
		{"cap at the initial delay", supervise.Backoff{Initial: time.Second, Max: time.Second},
			[]supervise.State{supervise.StateBackoff, supervise.StateCrashLoop, supervise.StateCrashLoop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSupervisor(t, tc.backoff, 0.5)
			if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.OnFailure}); err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				delay := f.crash(t, 100+i, 1, time.Second)
				if vm := f.get(t, "vm"); vm.State != want {
					t.Fatalf("failure %d (delay %s): %s; want %s", i+1, delay, vm.State, want)
				}
				f.clock.advance(delay)
			}
		})
	}
}

// TestPermanentErrors: a launch that no retry would change leaves the VM
// failed after one attempt, under any policy, with no timer; one that may
// succeed later goes into a backoff, unless the policy is never.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	pathErr := func(errno syscall.Errno) error {
		return &launcher.LaunchError{Phase: launcher.PhaseExec, Err: &fs.PathError{Op: "fork/exec", Path: "/vm", Err: errno}}
	}
	refused := errors.New("pin mismatch: the file is not the pinned one")
	for _, tc := range []struct {
		name      string
		command   func() (*exec.Cmd, error)
		err       error // of the launch
		policy    supervise.Policy
		permanent bool
	}{
		{"version mismatch", fakeCommand, &launcher.LaunchError{Phase: launcher.PhaseVersion,
			Err: &vmre.VersionMismatchError{HostName: "vmre", HostVersion: 1, VMVersion: 2}}, supervise.Always, true},
		{"invalid launch", fakeCommand, &launcher.LaunchError{Phase: launcher.PhaseConfig, Err: vmre.ErrInvalidConfig}, supervise.Always, true},
		{"missing file", fakeCommand, pathErr(syscall.ENOENT), supervise.Always, true},
		{"not executable", fakeCommand, pathErr(syscall.EACCES), supervise.Always, true},
		{"exec format error", fakeCommand, pathErr(syscall.ENOEXEC), supervise.Always, true},
		{"command refused", func() (*exec.Cmd, error) { return nil, refused }, nil, supervise.Always, true},
		{"no process to spare", fakeCommand, pathErr(syscall.EAGAIN), supervise.Always, false},
		{"handshake timeout", fakeCommand, &launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, Err: vmre.ErrHandshakeTimeout}, supervise.OnFailure, false},
		{"nothing listens at the address", fakeCommand, &launcher.LaunchError{Phase: launcher.PhaseReady, Err: syscall.ECONNREFUSED}, supervise.Always, false},
		{"handshake timeout under never", fakeCommand, &launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, Err: vmre.ErrHandshakeTimeout}, supervise.Never, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
			if err := f.Add(supervise.Spec{Name: "vm", Command: tc.command, Policy: tc.policy}); err != nil {
				t.Fatal(err)
			}
			want := tc.err
			if tc.err != nil {
				f.launcher.next(t).fail(tc.err)
			} else {
				want = refused
			}
			if !tc.permanent {
				f.clock.waitTimer(t)
				if vm := f.get(t, "vm"); vm.State != supervise.StateBackoff || !errors.Is(vm.Err, want) {
					t.Fatalf("a failure that may pass: %s, %v; want a backoff and the error", vm.State, vm.Err)
				}
				return
			}
			failed := f.rec.wait(t, 1, "the failed state", is(supervise.StateFailed))
			if !errors.Is(failed.Err, want) || failed.Launches != 1 {
				t.Errorf("failed: %d launches, error %v; want one and %v", failed.Launches, failed.Err, want)
			}
			if p := f.clock.pending(); len(p) != 0 {
				t.Errorf("a permanent failure left timers %v", p)
			}
			f.launcher.none(t, "after a permanent failure")
		})
	}
}

// TestStopDuringBackoff: Stop in a backoff cancels the restart at once
// (its timer is stopped: no launch however long after), and Start
// launches the VM again without waiting.
func TestStopDuringBackoff(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	f.crash(t, 100, 1, time.Second)
	ctx := t.Context()
	if changed, err := f.Stop(ctx, "vm"); err != nil || !changed {
		t.Fatalf("Stop in a backoff: %v, changed %v", err, changed)
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateStopped {
		t.Errorf("after Stop: %s; want stopped", vm.State)
	}
	if p := f.clock.pending(); len(p) != 0 {
		t.Errorf("the restart's timer is still pending after Stop: %v", p)
	}
	f.clock.advance(time.Hour)
	f.launcher.none(t, "an hour after Stop")
	started := make(chan error, 1)
	go func() {
		_, err := f.Start(ctx, "vm")
		started <- err
	}()
	f.launcher.next(t).succeed(101)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateRunning || vm.Pid != 101 || vm.Launches != 2 {
		t.Errorf("after Start: %s, pid %d, %d launches; want running as 101 after 2", vm.State, vm.Pid, vm.Launches)
	}
}

// TestRemoveDuringBackoffAndLaunch: Remove of a VM waiting in a backoff
// stops its timer; Remove of a VM whose launch is under way abandons the
// launch (its context ends). Either returns once the VM is forgotten, and
// the name is free again.
func TestRemoveDuringBackoffAndLaunch(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
	if err := f.Add(supervise.Spec{Name: "backoff", Command: fakeCommand, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	f.crash(t, 100, 1, time.Second)
	ctx := t.Context()
	if err := f.Remove(ctx, "backoff"); err != nil {
		t.Fatal(err)
	}
	if p := f.clock.pending(); len(p) != 0 {
		t.Errorf("the restart's timer is still pending after Remove: %v", p)
	}

	if err := f.Add(supervise.Spec{Name: "launching", Command: fakeCommand, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	launch := f.launcher.next(t)
	if err := f.Remove(ctx, "launching"); err != nil {
		t.Fatal(err)
	}
	if launch.ctx.Err() == nil {
		t.Error("Remove returned; the launch's context has not ended")
	}
	if n := len(f.List()); n != 0 {
		t.Errorf("%d VMs listed after the removals; want none", n)
	}
	f.rec.mu.Lock()
	removed := slices.Clone(f.rec.removed)
	f.rec.mu.Unlock()
	if want := []string{"backoff", "launching"}; !slices.Equal(removed, want) {
		t.Errorf("Hooks.Removed told of %v; want %v", removed, want)
	}
	if err := f.Add(supervise.Spec{Name: "launching", Command: fakeCommand}); err != nil {
		t.Fatal(err)
	}
	f.launcher.next(t).succeed(102)
	f.rec.wait(t, 1, "the VM added again running", is(supervise.StateRunning))
}

// TestLastExitAndErrorOfEveryAttempt: the state's last exit, error and
// stderr are those of the latest attempt, whether it ran or failed before
// its handshake: a VM that ran for 34 minutes and then fails to start
// never shows that run's exit again.
func TestLastExitAndErrorOfEveryAttempt(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	run := f.launcher.next(t).succeed(100)
	run.end(launcher.Exit{Code: 0, Ran: 34 * time.Minute})
	delay := f.clock.waitTimer(t)
	if vm := f.get(t, "vm"); vm.LastExit == nil || vm.LastExit.Ran != 34*time.Minute || vm.Err != nil {
		t.Fatalf("after the long run: last exit %v, error %v; want that run's exit and no error", vm.LastExit, vm.Err)
	}
	first := len(f.rec.all())

	exited := &launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, Exit: &launcher.Exit{Code: 3, Ran: 40 * time.Millisecond},
		Stderr: []string{"panic: no config"}, Err: fmt.Errorf("the VM exited: exit code 3")}
	timeout := &launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, Err: vmre.ErrHandshakeTimeout, Stderr: []string{"waiting for a lock"}}
	noproc := &launcher.LaunchError{Phase: launcher.PhaseExec, Err: &fs.PathError{Op: "fork/exec", Path: "/vm", Err: syscall.EAGAIN}}
	for i, tc := range []struct {
		err    *launcher.LaunchError
		exit   *launcher.Exit
		stderr []string
	}{
		{exited, exited.Exit, exited.Stderr},
		{timeout, nil, timeout.Stderr},
		{noproc, nil, nil},
	} {
		f.clock.advance(delay)
		f.launcher.next(t).fail(tc.err)
		delay = f.clock.waitTimer(t)
		vm := f.get(t, "vm")
		if !errors.Is(vm.Err, tc.err) || vm.LastExit != tc.exit || !slices.Equal(vm.Stderr, tc.stderr) {
			t.Errorf("after failed attempt %d: error %v, last exit %v, stderr %q; want %v, %v, %q",
				i+2, vm.Err, vm.LastExit, vm.Stderr, tc.err, tc.exit, tc.stderr)
		}
	}
	f.clock.advance(delay)
	f.launcher.next(t).succeed(101)
	running := f.rec.wait(t, 2, "the run after the failures", is(supervise.StateRunning))
	if running.Err != nil {
		t.Errorf("running again with error %v; want none", running.Err)
	}
	// From the first failure on (the launch that failed was told of as
	// starting, when the long run was the last to have ended).
	after := f.rec.all()[first:]
	failure := slices.IndexFunc(after, func(vm supervise.VM) bool { return vm.Err != nil })
	for _, vm := range after[failure:] {
		if vm.LastExit != nil && vm.LastExit.Ran == 34*time.Minute {
			t.Errorf("a %s state after a failed attempt shows the long run's exit", vm.State)
		}
	}
}

// TestCloseDuringLaunch: Close abandons a launch under way and returns
// once the VM's goroutine has ended (the test's goroutine check sees it).
func TestCloseDuringLaunch(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand}); err != nil {
		t.Fatal(err)
	}
	launch := f.launcher.next(t)
	f.Close(context.Background())
	if launch.ctx.Err() == nil {
		t.Error("Close returned; the launch's context has not ended")
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateStopped {
		t.Errorf("after Close: %s; want stopped", vm.State)
	}
}

// TestAddStopped: a VM added stopped (an operator's stop that outlived a
// restart of the node) is stopped from the first, launches nothing, and
// has no error nor exit, until Start launches it.
func TestAddStopped(t *testing.T) {
	t.Parallel()
	f := newFakeSupervisor(t, supervise.Backoff{}, 0.5)
	if err := f.Add(supervise.Spec{Name: "vm", Command: fakeCommand, Policy: supervise.Always, Stopped: true}); err != nil {
		t.Fatal(err)
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateStopped || vm.Launches != 0 {
		t.Errorf("added stopped: %s after %d launches; want stopped, none", vm.State, vm.Launches)
	}
	// A Stop is answered by the VM's goroutine once it idles: nothing was
	// launched before it, nor is after.
	if changed, err := f.Stop(t.Context(), "vm"); err != nil || changed {
		t.Fatalf("Stop of a VM added stopped: changed %v, %v; want nothing to do", changed, err)
	}
	f.launcher.none(t, "added stopped")
	if vm := f.get(t, "vm"); vm.Err != nil || vm.LastExit != nil {
		t.Errorf("added stopped: error %v, exit %v; want none: it never ran", vm.Err, vm.LastExit)
	}
	started := make(chan error, 1)
	go func() {
		_, err := f.Start(t.Context(), "vm")
		started <- err
	}()
	f.launcher.next(t).succeed(100)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if vm := f.get(t, "vm"); vm.State != supervise.StateRunning || vm.Launches != 1 {
		t.Errorf("after Start: %s after %d launches; want running after 1", vm.State, vm.Launches)
	}
}
