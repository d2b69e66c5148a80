package supervise_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// fakeClock is a supervise.Clock whose time moves only when a test
// advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer  // pending: neither fired nor stopped
	made   int           // timers made, fired and stopped ones included
	change chan struct{} // closed at each new timer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), change: make(chan struct{})}
}

type fakeTimer struct {
	c  *fakeClock
	d  time.Duration
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) supervise.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, d: d, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.made++
	close(c.change)
	c.change = make(chan struct{})
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	n := len(t.c.timers)
	t.c.timers = slices.DeleteFunc(t.c.timers, func(p *fakeTimer) bool { return p == t })
	return len(t.c.timers) < n
}

// advance moves the time on by d and fires the timers due by then.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.ch <- c.now
		return true
	})
}

// waitFor waits until a timer of d is pending.
func (c *fakeClock) waitFor(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		timers, change := c.timers, c.change
		c.mu.Unlock()
		for _, p := range timers {
			if p.d == d {
				return
			}
		}
		select {
		case <-change:
		case <-timeout.C:
			t.Fatalf("no timer of %s within %s; pending: %v", d, vmretest.WaitTimeout, c.pending())
		}
	}
}

// pending returns the durations of the pending timers.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ds []time.Duration
	for _, t := range c.timers {
		ds = append(ds, t.d)
	}
	return ds
}

// timersMade returns the number of timers made so far.
func (c *fakeClock) timersMade() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made
}

// waitTimer waits until a timer is pending, and returns its duration.
func (c *fakeClock) waitTimer(t *testing.T) time.Duration {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		timers, change := c.timers, c.change
		c.mu.Unlock()
		if len(timers) == 1 {
			return timers[0].d
		}
		if len(timers) > 1 {
			t.Fatalf("%d timers pending; want one", len(timers))
		}
		select {
		case <-change:
		case <-timeout.C:
			t.Fatalf("no timer within %s", vmretest.WaitTimeout)
		}
	}
}

// fixedRand is a supervise.Rand that always draws the same number.
type fixedRand float64

func (r fixedRand) Float64() float64 { return float64(r) }

// fakeLauncher is a supervise.Launcher that starts no process: each launch
// waits for the test to answer it.
type fakeLauncher struct {
	launches chan *fakeLaunch
}

// fakeLaunch is one launch the Supervisor asked for.
type fakeLaunch struct {
	req    supervise.LaunchRequest
	ctx    context.Context
	answer chan fakeAnswer
}

type fakeAnswer struct {
	run *fakeRun
	err error
	// hold, when set, holds the launch's success until it is closed,
	// whatever the launch's context: a handshake that completes as its
	// deadline fires. held is closed once the launch holds.
	hold, held chan struct{}
}

func (f *fakeLauncher) Launch(ctx context.Context, req supervise.LaunchRequest) (supervise.Run, error) {
	l := &fakeLaunch{req: req, ctx: ctx, answer: make(chan fakeAnswer, 1)}
	abandoned := func() error {
		return &launcher.LaunchError{Phase: launcher.PhaseHandshakeWait, VM: req.Name, Err: context.Cause(ctx)}
	}
	select {
	case f.launches <- l:
	case <-ctx.Done():
		return nil, abandoned()
	}
	select {
	case a := <-l.answer:
		if a.err != nil {
			return nil, a.err
		}
		if a.hold != nil {
			close(a.held)
			<-a.hold
		}
		req.OnReady(supervise.Ready{Pid: a.run.pid, Addr: "127.0.0.1:1", ProtocolVersion: 1})
		return a.run, nil
	case <-ctx.Done():
		return nil, abandoned()
	}
}

// receive returns the next value of ch, failing the test when none comes
// within vmretest.WaitTimeout.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		t.Fatalf("no %s within %s", what, vmretest.WaitTimeout)
		var zero T
		return zero
	}
}

// nothing fails the test if ch holds a value. It is called when nothing
// could have led to one (no timer fired, no command was given), so it
// need not wait.
func nothing[T any](t *testing.T, ch <-chan T, what, when string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: a %s", when, what)
	default:
	}
}

// next returns the next launch the Supervisor asks for.
func (f *fakeLauncher) next(t *testing.T) *fakeLaunch {
	t.Helper()
	return receive(t, f.launches, "launch")
}

// none fails the test if the Supervisor has asked for a launch.
func (f *fakeLauncher) none(t *testing.T, when string) {
	t.Helper()
	nothing(t, f.launches, "launch", when)
}

// succeed completes the launch: the VM runs as pid.
func (l *fakeLaunch) succeed(pid int) *fakeRun {
	r := &fakeRun{pid: pid, done: make(chan struct{})}
	l.answer <- fakeAnswer{run: r}
	return r
}

// fail ends the launch with err.
func (l *fakeLaunch) fail(err error) { l.answer <- fakeAnswer{err: err} }

// fakeRun is a running fake VM: it ends when the test crashes it or the
// Supervisor stops it.
type fakeRun struct {
	pid  int
	done chan struct{}
	once sync.Once
	exit launcher.Exit
}

func (r *fakeRun) Done() <-chan struct{} { return r.done }

func (r *fakeRun) Exit() (launcher.Exit, bool) {
	select {
	case <-r.done:
		return r.exit, true
	default:
		return launcher.Exit{}, false
	}
}

func (r *fakeRun) Stop(context.Context) {
	r.end(launcher.Exit{Code: 0, Stage: launcher.StageTerm})
}

func (r *fakeRun) LastStderr() []string {
	return []string{fmt.Sprintf("the last words of pid %d", r.pid)}
}

// end makes the VM exit with e.
func (r *fakeRun) end(e launcher.Exit) {
	r.once.Do(func() {
		r.exit = e
		close(r.done)
	})
}

// fakeSupervisor is a Supervisor over a fake launcher, clock and random
// source, closed when the test ends.
type fakeSupervisor struct {
	*supervise.Supervisor
	clock    *fakeClock
	launcher *fakeLauncher
	rec      *states
	rollouts chan rolloutEvent // what the rollout hooks told
}

// rolloutEvent is one call of a rollout hook: kind names it (started,
// healthy, reverted, failed).
type rolloutEvent struct {
	kind string
	supervise.RolloutEvent
}

func newFakeSupervisor(t *testing.T, backoff supervise.Backoff, r float64) *fakeSupervisor {
	t.Helper()
	return newFakeSupervisorWith(t, supervise.Config{Backoff: backoff}, r)
}

// newFakeSupervisorWith is newFakeSupervisor of cfg, whose launcher, hooks,
// logger, clock and random source it sets.
func newFakeSupervisorWith(t *testing.T, cfg supervise.Config, r float64) *fakeSupervisor {
	t.Helper()
	f := &fakeSupervisor{clock: newFakeClock(), launcher: &fakeLauncher{launches: make(chan *fakeLaunch)}, rec: newStates(),
		rollouts: make(chan rolloutEvent, 64)}
	cfg.Launcher, cfg.Clock, cfg.Rand = f.launcher, f.clock, fixedRand(r)
	told := func(kind string) func(supervise.RolloutEvent) {
		return func(ev supervise.RolloutEvent) { f.rollouts <- rolloutEvent{kind, ev} }
	}
	cfg.Hooks = &supervise.Hooks{State: f.rec.add, Removed: f.rec.remove,
		RolloutStarted: told("started"), RolloutHealthy: told("healthy"), RolloutReverted: told("reverted"), RolloutFailed: told("failed")}
	cfg.Logger = vmretest.Logger(t)
	s, err := supervise.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Supervisor = s
	t.Cleanup(func() { s.Close(context.Background()) })
	return f
}

// fakeCommand is a Spec.Command for the fake launcher, which runs nothing.
func fakeCommand() (*exec.Cmd, error) { return exec.Command("fake-vm"), nil }

// get returns the VM's snapshot.
func (f *fakeSupervisor) get(t *testing.T, name string) supervise.VM {
	t.Helper()
	vm, ok := f.Get(name)
	if !ok {
		t.Fatalf("no VM %q", name)
	}
	return vm
}

// fakeProber is a supervise.Prober whose probes wait for the test to
// answer them.
type fakeProber struct {
	probes chan *fakeProbe
}

// fakeProbe is one probe the Supervisor made.
type fakeProbe struct {
	vm     supervise.VM
	ctx    context.Context
	answer chan error
}

func newFakeProber() *fakeProber { return &fakeProber{probes: make(chan *fakeProbe)} }

func (p *fakeProber) Probe(ctx context.Context, vm supervise.VM) error {
	pr := &fakeProbe{vm: vm, ctx: ctx, answer: make(chan error, 1)}
	select {
	case p.probes <- pr:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-pr.answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the next probe the Supervisor makes.
func (p *fakeProber) next(t *testing.T) *fakeProbe {
	t.Helper()
	return receive(t, p.probes, "probe")
}

// none fails the test if the Supervisor has made a probe.
func (p *fakeProber) none(t *testing.T, when string) {
	t.Helper()
	nothing(t, p.probes, "probe", when)
}
