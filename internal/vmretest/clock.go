package vmretest

import (
	"sync"
	"testing"
	"time"
)

// StepClock is a clock that moves only when the test says, for policy
// tested without waiting: the code under test takes Now and After, and
// each wait it starts with After is handed to the test (NextWait), which
// ends it with Fire.
type StepClock struct {
	mu    sync.Mutex
	at    time.Time
	waits chan StepWait
}

// StepWait is a wait the code under test started with StepClock.After.
type StepWait struct {
	D    time.Duration // how long it asked to wait
	fire chan time.Time
}

// NewStepClock returns a StepClock at at.
func NewStepClock(at time.Time) *StepClock {
	return &StepClock{at: at, waits: make(chan StepWait)}
}

// Now is the clock's time.
func (c *StepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// Advance moves the clock by d.
func (c *StepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

// After is time.After on the clock: it blocks until the test has taken the
// wait with NextWait, and its channel sends when the test fires it.
func (c *StepClock) After(d time.Duration) <-chan time.Time {
	w := StepWait{D: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// Fire ends the wait w at the clock's time.
func (c *StepClock) Fire(w StepWait) { w.fire <- c.Now() }

// NextWait returns the next wait the code under test starts, and fails
// the test unless it asks for want, or if something arrives on unexpected
// first (what the code does when it does not wait), or if no wait starts
// within WaitTimeout.
func NextWait[T any](t testing.TB, c *StepClock, want time.Duration, unexpected <-chan T) StepWait {
	t.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	select {
	case w := <-c.waits:
		if w.D != want {
			t.Errorf("the wait is %s; want %s", w.D, want)
		}
		return w
	case v := <-unexpected:
		t.Fatalf("went on (%v) without waiting", v)
	case <-timeout.C:
		t.Fatalf("no wait started within %s", WaitTimeout)
	}
	panic("unreachable")
}
