package launcher_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// launchingCount follows, through the hooks, how many launches are between
// their exec (Started) and their end (Ready or LaunchFailed).
type launchingCount struct {
	mu       sync.Mutex
	now      int
	most     int
	started  int
	onStart  func(n int) // called with the count of starts so far, unlocked
	launches map[int]bool
}

func (c *launchingCount) hooks() *launcher.Hooks {
	c.launches = map[int]bool{}
	end := func(pid int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.launches[pid] {
			delete(c.launches, pid)
			c.now--
		}
	}
	return &launcher.Hooks{
		Started: func(i launcher.StartedInfo) {
			c.mu.Lock()
			c.launches[i.Pid] = true
			c.now++
			c.started++
			c.most = max(c.most, c.now)
			n := c.started
			c.mu.Unlock()
			if c.onStart != nil {
				c.onStart(n)
			}
		},
		Ready:        func(i launcher.ReadyInfo) { end(i.Pid) },
		LaunchFailed: func(err *launcher.LaunchError) { end(err.Pid) },
	}
}

// TestMaxConcurrentLaunches: with a limit of 2, eight launches made at once
// all succeed, and the hooks never see more than two of them between their
// exec and their end.
func TestMaxConcurrentLaunches(t *testing.T) {
	t.Parallel()
	var c launchingCount
	l := newLauncher(t, launcher.Config{MaxConcurrentLaunches: 2, Hooks: c.hooks()})
	var wg sync.WaitGroup
	rts := make([]*launcher.Runtime, 8)
	errs := make([]error, 8)
	for i := range rts {
		wg.Go(func() { rts[i], errs[i] = l.Launch(t.Context(), vmretest.Command("ok")) })
	}
	wg.Wait()
	for i, rt := range rts {
		if errs[i] != nil {
			t.Errorf("launch %d: %v", i, errs[i])
			continue
		}
		rt.Stop(context.Background())
		waitDone(t, rt)
	}
	if c.started != 8 || c.most > 2 || c.most < 1 {
		t.Errorf("%d launches started, at most %d at once; want 8, at most 2", c.started, c.most)
	}
}

// TestLaunchWaitsForItsTurn: while two launches hold the two turns of a
// Launcher (their Started hooks hold them), a third whose context ends
// fails in PhaseExec with its context's cause, without starting its VM; the
// two then complete.
func TestLaunchWaitsForItsTurn(t *testing.T) {
	t.Parallel()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c := launchingCount{onStart: func(n int) {
		if n == 2 {
			once.Do(func() { close(held) })
		}
		if n <= 2 {
			<-release
		}
	}}
	l := newLauncher(t, launcher.Config{MaxConcurrentLaunches: 2, Hooks: c.hooks()})
	var wg sync.WaitGroup
	rts := make([]*launcher.Runtime, 2)
	errs := make([]error, 2)
	for i := range rts {
		wg.Go(func() { rts[i], errs[i] = l.Launch(t.Context(), vmretest.Command("ok")) })
	}
	vmretest.WaitClosed(t, held, "two launches holding their turns")

	cause := errors.New("the node is stopping")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(cause)
	_, err := l.Launch(ctx, vmretest.Command("ok"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseExec || !errors.Is(err, cause) || lerr.Pid != 0 {
		t.Errorf("a launch whose context ended while it waited: %v; want PhaseExec, no process, its cause", err)
	}
	close(release)
	wg.Wait()
	for i, rt := range rts {
		if errs[i] != nil {
			t.Fatalf("launch %d: %v", i, errs[i])
		}
		rt.Stop(context.Background())
		waitDone(t, rt)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started != 2 {
		t.Errorf("%d VMs started; want the 2 that had their turn", c.started)
	}
}
