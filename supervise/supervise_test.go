package supervise_test

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// states records the changes a Supervisor tells of, and lets a test wait
// for one.
type states struct {
	mu      sync.Mutex
	list    []supervise.VM
	removed []string // the names Hooks.Removed told of
	change  chan struct{}
}

func newStates() *states { return &states{change: make(chan struct{})} }

func (s *states) add(vm supervise.VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, vm)
	close(s.change)
	s.change = make(chan struct{})
}

func (s *states) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, name)
}

func (s *states) all() []supervise.VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// wait returns the n-th change (from 1) that satisfies match, waiting for
// it up to vmretest.WaitTimeout.
func (s *states) wait(t *testing.T, n int, what string, match func(supervise.VM) bool) supervise.VM {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		list, change := s.list, s.change
		s.mu.Unlock()
		seen := 0
		for _, vm := range list {
			if match(vm) {
				if seen++; seen == n {
					return vm
				}
			}
		}
		select {
		case <-change:
		case <-timeout.C:
			t.Fatalf("no %s (#%d) within %s; states: %v", what, n, vmretest.WaitTimeout, stateNames(list))
		}
	}
}

func stateNames(list []supervise.VM) []string {
	var names []string
	for _, vm := range list {
		names = append(names, vm.State.String())
	}
	return names
}

func is(state supervise.State) func(supervise.VM) bool {
	return func(vm supervise.VM) bool { return vm.State == state }
}

func waiting(vm supervise.VM) bool {
	return vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop
}

// newSupervisor returns a Supervisor over a Launcher of its own, both
// closed when the test ends, and the record of its changes.
func newSupervisor(t *testing.T, backoff supervise.Backoff) (*supervise.Supervisor, *states) {
	t.Helper()
	return newSupervisorWith(t, supervise.Config{Backoff: backoff})
}

// newSupervisorWith is newSupervisor of cfg, whose launcher, hooks and
// logger it sets.
func newSupervisorWith(t *testing.T, cfg supervise.Config) (*supervise.Supervisor, *states) {
	t.Helper()
	l, err := launcher.New(launcher.Config{Logger: vmretest.Logger(t), GracefulTimeout: 5 * time.Second, HandshakeTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	rec := newStates()
	cfg.Launcher, cfg.Logger = supervise.FromLauncher(l), vmretest.Logger(t)
	cfg.Hooks = &supervise.Hooks{State: rec.add, Removed: rec.remove}
	s, err := supervise.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, rec
}

// helper is a Spec.Command of a test VM.
func helper(mode string, args ...string) func() (*exec.Cmd, error) {
	return func() (*exec.Cmd, error) { return vmretest.Command(mode, args...), nil }
}

// TestCrashingVMRestartsWithGrowingDelays: a VM that crashes after its
// handshake is launched again after delays that double up to the cap, each
// waited in full, in order.
func TestCrashingVMRestartsWithGrowingDelays(t *testing.T) {
	t.Parallel()
	backoff := supervise.Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, ResetAfter: time.Hour}
	s, rec := newSupervisor(t, backoff)
	if err := s.Add(supervise.Spec{Name: "crasher", Command: helper("crash", "0s"), Policy: supervise.OnFailure}); err != nil {
		t.Fatal(err)
	}
	const waits = 4
	rec.wait(t, waits+1, "a launch after the backoffs", is(supervise.StateStarting))
	s.Close(context.Background())

	bases := []time.Duration{100, 200, 400, 400}
	var backoffs []supervise.VM
	list := rec.all()
	for i, vm := range list {
		if !waiting(vm) {
			continue
		}
		n := len(backoffs)
		backoffs = append(backoffs, vm)
		if n >= waits {
			break
		}
		base := bases[n] * time.Millisecond
		if vm.Attempt != n+1 || vm.Delay < base*9/10 || vm.Delay > base*11/10 {
			t.Errorf("backoff %d: attempt %d, delay %s; want attempt %d, delay %s ±10%%", n+1, vm.Attempt, vm.Delay, n+1, base)
		}
		if want := supervise.StateBackoff; base == backoff.Max {
			want = supervise.StateCrashLoop
			if vm.State != want {
				t.Errorf("backoff %d at the cap: state %s; want %s", n+1, vm.State, want)
			}
		} else if vm.State != want {
			t.Errorf("backoff %d: state %s; want %s", n+1, vm.State, want)
		}
		// The next launch comes no sooner than the delay.
		next := slices.IndexFunc(list[i+1:], is(supervise.StateStarting))
		if next < 0 {
			continue
		}
		if waited := list[i+1+next].Since.Sub(vm.Since); waited < vm.Delay {
			t.Errorf("backoff %d: the next launch came after %s; the delay was %s", n+1, waited, vm.Delay)
		}
	}
	if len(backoffs) < waits {
		t.Fatalf("%d backoffs; want %d: %v", len(backoffs), waits, stateNames(list))
	}
	// The Close above abandoned the last launch: the last backoff tells of
	// the crashes.
	if last := backoffs[waits-1]; last.Restarts < waits-1 || last.LastExit == nil || last.LastExit.Code != 1 {
		t.Errorf("after the crashes: %+v; want %d restarts and exit code 1", last, waits-1)
	}
}

// TestLongRunResetsTheBackoff: a VM that ran past ResetAfter before it
// crashed is launched again after the initial delay.
func TestLongRunResetsTheBackoff(t *testing.T) {
	t.Parallel()
	// A VM that crashes at once runs a few hundred milliseconds (its start,
	// its handshake, its shutdown), a second or so on a loaded machine: far
	// less than ResetAfter, and the long run far more.
	backoff := supervise.Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 3 * time.Second}
	s, rec := newSupervisor(t, backoff)
	var mu sync.Mutex
	launches := 0
	command := func() (*exec.Cmd, error) {
		mu.Lock()
		defer mu.Unlock()
		launches++
		runFor := "0s" // the first two crash at once
		if launches == 3 {
			runFor = "3500ms" // the third runs past ResetAfter
		}
		return vmretest.Command("crash", runFor), nil
	}
	if err := s.Add(supervise.Spec{Name: "late", Command: command, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	third := rec.wait(t, 3, "the third backoff", waiting)
	s.Close(context.Background())
	second := rec.wait(t, 2, "the second backoff", waiting)
	if second.Attempt != 2 || second.Delay < 180*time.Millisecond {
		t.Errorf("second backoff: attempt %d, delay %s; want attempt 2, about 200ms", second.Attempt, second.Delay)
	}
	if third.Attempt != 1 || third.Delay > 110*time.Millisecond || third.LastExit == nil || third.LastExit.Ran < backoff.ResetAfter {
		t.Errorf("after a run of %v: attempt %d, delay %s; want attempt 1 and the initial delay", third.LastExit, third.Attempt, third.Delay)
	}
}

// TestPermanentFailuresAreNotRetried: a protocol version mismatch, a
// missing file and a command that cannot be made leave the VM failed after
// one launch, whatever the policy.
func TestPermanentFailuresAreNotRetried(t *testing.T) {
	t.Parallel()
	refused := errors.New("pin mismatch: the file is not the pinned one")
	for _, tc := range []struct {
		name    string
		command func() (*exec.Cmd, error)
		is      error
	}{
		{"version mismatch", helper("mismatch"), vmre.ErrProtocolVersionMismatch},
		{"missing file", func() (*exec.Cmd, error) { return exec.Command("/nonexistent/vm"), nil }, fs.ErrNotExist},
		{"command refused", func() (*exec.Cmd, error) { return nil, refused }, refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, rec := newSupervisor(t, supervise.Backoff{Initial: time.Millisecond})
			if err := s.Add(supervise.Spec{Name: "vm", Command: tc.command, Policy: supervise.Always}); err != nil {
				t.Fatal(err)
			}
			failed := rec.wait(t, 1, "the failed state", is(supervise.StateFailed))
			if !errors.Is(failed.Err, tc.is) || failed.Launches != 1 {
				t.Errorf("failed: %+v; want one launch and an error matching %v", failed, tc.is)
			}
			for _, vm := range rec.all() {
				if waiting(vm) {
					t.Errorf("a permanent failure went into a backoff: %v", stateNames(rec.all()))
				}
			}
		})
	}
}

// TestStopDuringBackoffReturnsAtOnce: an operator's Stop, and Close, during
// an hour-long backoff return at once, cancel the restart, and leave no
// process behind.
func TestStopDuringBackoffReturnsAtOnce(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{Initial: time.Hour})
	for _, name := range []string{"stopped", "closed"} {
		if err := s.Add(supervise.Spec{Name: name, Command: helper("crash", "0s"), Policy: supervise.Always}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"stopped", "closed"} {
		rec.wait(t, 1, name+"'s backoff", func(vm supervise.VM) bool { return vm.Name == name && waiting(vm) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmretest.WaitTimeout)
	defer cancel()
	changed, err := s.Stop(ctx, "stopped")
	if err != nil || !changed {
		t.Fatalf("Stop during the backoff: %v, changed %v", err, changed)
	}
	if vm, _ := s.Get("stopped"); vm.State != supervise.StateStopped {
		t.Errorf("after Stop: %s; want stopped", vm.State)
	}
	if changed, err := s.Stop(ctx, "stopped"); err != nil || changed {
		t.Errorf("second Stop: %v, changed %v; want a no-op", err, changed)
	}
	s.Close(ctx)
	if ctx.Err() != nil {
		t.Fatal("Close waited for the backoff")
	}
	for _, vm := range s.List() {
		if vm.State != supervise.StateStopped || vm.Launches != 1 {
			t.Errorf("%s after Close: %s, %d launches; want stopped after one", vm.Name, vm.State, vm.Launches)
		}
		wantGone(t, vm.Pid)
	}
}

// TestOperatorCommands: Stop, Start and Restart of a running VM, and their
// no-ops.
func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{})
	if err := s.Add(supervise.Spec{Name: "vm", Command: helper("serve"), Policy: supervise.OnFailure}); err != nil {
		t.Fatal(err)
	}
	first := rec.wait(t, 1, "the first run", is(supervise.StateRunning))
	ctx := t.Context()
	if changed, err := s.Start(ctx, "vm"); err != nil || changed {
		t.Errorf("Start of a running VM: %v, changed %v; want a no-op", err, changed)
	}
	if err := s.Restart(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	second, _ := s.Get("vm")
	if second.State != supervise.StateRunning || second.Pid == first.Pid || second.LastExit == nil || second.LastExit.Stage != launcher.StageTerm {
		t.Errorf("after Restart: %+v; want a new pid, the old one stopped by SIGTERM", second)
	}
	wantGone(t, first.Pid)
	if changed, err := s.Stop(ctx, "vm"); err != nil || !changed {
		t.Fatalf("Stop: %v, changed %v", err, changed)
	}
	wantGone(t, second.Pid)
	if changed, err := s.Start(ctx, "vm"); err != nil || !changed {
		t.Fatalf("Start of a stopped VM: %v, changed %v", err, changed)
	}
	third, _ := s.Get("vm")
	if third.State != supervise.StateRunning || third.Pid == second.Pid || third.Launches != 3 || third.Restarts != 0 {
		t.Errorf("after Start: %+v; want running, 3 launches, no restart by the policy", third)
	}
	if _, err := s.Stop(ctx, "nope"); !errors.Is(err, supervise.ErrUnknownVM) {
		t.Errorf("Stop of an unknown VM: %v; want ErrUnknownVM", err)
	}
	s.Close(context.Background())
	wantGone(t, third.Pid)
	if err := s.Add(supervise.Spec{Name: "late", Command: helper("serve")}); !errors.Is(err, supervise.ErrClosed) {
		t.Errorf("Add after Close: %v; want ErrClosed", err)
	}
}

// TestRestartDuringBackoffRestartsNow: Restart does not wait for the
// backoff.
func TestRestartDuringBackoffRestartsNow(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{Initial: time.Hour})
	runs := 0
	var mu sync.Mutex
	command := func() (*exec.Cmd, error) {
		mu.Lock()
		defer mu.Unlock()
		if runs++; runs == 1 {
			return vmretest.Command("crash", "0s"), nil
		}
		return vmretest.Command("serve"), nil
	}
	if err := s.Add(supervise.Spec{Name: "vm", Command: command, Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1, "the backoff", waiting)
	if err := s.Restart(t.Context(), "vm"); err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.Get("vm"); vm.State != supervise.StateRunning || vm.Launches != 2 {
		t.Errorf("after Restart during the backoff: %+v; want running after 2 launches", vm)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []supervise.Policy{supervise.Never, supervise.OnFailure, supervise.Always} {
		if got, err := supervise.ParsePolicy(p.String()); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := supervise.ParsePolicy("sometimes"); err == nil {
		t.Error("ParsePolicy(sometimes) succeeded")
	}
}

// TestReplaceServesTheNextLaunch: a replaced Spec leaves the running VM
// alone, and the next launch runs the new command.
func TestReplaceServesTheNextLaunch(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{})
	if err := s.Add(supervise.Spec{Name: "vm", Command: helper("serve")}); err != nil {
		t.Fatal(err)
	}
	first := rec.wait(t, 1, "the first run", is(supervise.StateRunning))
	replaced := false
	var mu sync.Mutex
	newer := func() (*exec.Cmd, error) {
		mu.Lock()
		defer mu.Unlock()
		replaced = true
		return vmretest.Command("serve"), nil
	}
	if err := s.Replace(supervise.Spec{Name: "vm", Command: newer}); err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.Get("vm"); vm.Pid != first.Pid || vm.State != supervise.StateRunning {
		t.Fatalf("Replace touched the running VM: %+v", vm)
	}
	if err := s.Restart(t.Context(), "vm"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !replaced {
		t.Error("the restart did not run the new command")
	}
	if err := s.Replace(supervise.Spec{Name: "nope", Command: newer}); !errors.Is(err, supervise.ErrUnknownVM) {
		t.Errorf("Replace of an unknown VM: %v", err)
	}
}

// TestRemove: Remove stops a running VM gracefully, forgets it and tells
// Hooks.Removed; its name answers ErrUnknownVM until an Add uses it again.
// A VM waiting in a backoff is removed at once, and a remote VM is refused
// then forgotten.
func TestRemove(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{Initial: time.Hour})
	ctx := t.Context()

	if err := s.Add(supervise.Spec{Name: "vm", Command: helper("serve"), Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(supervise.Spec{Name: "crasher", Command: helper("crash", "0s"), Policy: supervise.Always}); err != nil {
		t.Fatal(err)
	}
	first := rec.wait(t, 1, "the first run", func(vm supervise.VM) bool { return vm.Name == "vm" && vm.State == supervise.StateRunning })
	rec.wait(t, 1, "the crasher's backoff", func(vm supervise.VM) bool { return vm.Name == "crasher" && waiting(vm) })

	if err := s.Remove(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	wantGone(t, first.Pid)
	last := rec.all()
	if vm := last[len(last)-1]; vm.Name != "vm" || vm.State != supervise.StateStopped || vm.LastExit == nil || vm.LastExit.Stage != launcher.StageTerm {
		t.Errorf("the last change before the removal: %+v; want vm stopped by SIGTERM", vm)
	}
	if _, ok := s.Get("vm"); ok {
		t.Error("Get found the removed VM")
	}
	if _, err := s.Stop(ctx, "vm"); !errors.Is(err, supervise.ErrUnknownVM) {
		t.Errorf("Stop of a removed VM: %v; want ErrUnknownVM", err)
	}
	if err := s.Remove(ctx, "vm"); !errors.Is(err, supervise.ErrUnknownVM) {
		t.Errorf("a second Remove: %v; want ErrUnknownVM", err)
	}

	// A backoff of an hour does not hold the removal up.
	if err := s.Remove(ctx, "crasher"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.List()); n != 0 {
		t.Errorf("List after the removals: %d VMs; want none", n)
	}

	// The name is free again.
	if err := s.Add(supervise.Spec{Name: "vm", Command: helper("serve")}); err != nil {
		t.Fatalf("Add after Remove: %v", err)
	}
	again := rec.wait(t, 2, "the run of the VM added again", func(vm supervise.VM) bool { return vm.Name == "vm" && vm.State == supervise.StateRunning })
	if again.Launches != 1 || again.Pid == first.Pid {
		t.Errorf("the VM added again: %+v; want a first launch of its own", again)
	}

	// A remote VM is refused, then forgotten.
	admitted := true
	remote := supervise.RemoteSpec{Name: "far", Admit: func(ok bool) { admitted = ok }, EndSession: func() {}}
	if err := s.AddRemote(remote); err != nil {
		t.Fatal(err)
	}
	s.RemoteUp("far", supervise.Session{Peer: "10.0.0.2:5000", Addr: "10.0.0.2:9650", ProtocolVersion: 1})
	if err := s.Remove(ctx, "far"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("far"); ok || admitted {
		t.Errorf("after Remove of a remote VM: listed %v, admitted %v; want neither", ok, admitted)
	}
	s.RemoteUp("far", supervise.Session{Peer: "10.0.0.2:5001"}) // a late session of the removed VM is ignored
	if _, ok := s.Get("far"); ok {
		t.Error("a late session brought the removed remote VM back")
	}
	if err := s.AddRemote(remote); err != nil {
		t.Errorf("AddRemote after Remove: %v", err)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []string{"vm", "crasher", "far"}; !slices.Equal(rec.removed, want) {
		t.Errorf("Hooks.Removed told of %v; want %v", rec.removed, want)
	}
}

// TestRemoveContextCutsTheGrace: a VM that ignores SIGTERM is killed as
// soon as Remove's context ends, not after the graceful timeout, and
// Remove returns once it is reaped.
func TestRemoveContextCutsTheGrace(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{}) // a graceful timeout of 5s
	if err := s.Add(supervise.Spec{Name: "stubborn", Command: helper("stubborn")}); err != nil {
		t.Fatal(err)
	}
	running := rec.wait(t, 1, "the run", is(supervise.StateRunning))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Remove(ctx, "stubborn"); err != nil {
		t.Fatal(err)
	}
	wantGone(t, running.Pid)
	stopped := rec.wait(t, 1, "the stop", is(supervise.StateStopped))
	if stopped.LastExit == nil || stopped.LastExit.Stage != launcher.StageKill {
		t.Errorf("removed under an ended context: %v; want killed", stopped.LastExit)
	}
}
