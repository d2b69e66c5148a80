package registry

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a digester's clock that moves when the test says: each
// wait the digester starts is sent on waits, and ends when the test
// closes the channel it carries.
type fakeClock struct {
	mu    sync.Mutex
	at    time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// TestDigesterWaitsForQuiet: the digester hashes nothing while digests are
// still being asked for (a node's launches), and takes them all, in order,
// once none has been asked for in digestQuiet; closed, it fails what is
// queued at once rather than wait.
func TestDigesterWaitsForQuiet(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{at: time.Unix(1000, 0), waits: make(chan fakeWait)}
	g := &digester{now: clock.now, after: clock.after}
	ran := make(chan int, 3)
	run := func(_ context.Context, j digestJob, _ []byte) { ran <- j.pid }
	receiveWait := func(want time.Duration) fakeWait {
		t.Helper()
		select {
		case w := <-clock.waits:
			if w.d != want {
				t.Errorf("the digester waits %s; want %s", w.d, want)
			}
			return w
		case pid := <-ran:
			t.Fatalf("the digester hashed %d without waiting for quiet", pid)
		case <-t.Context().Done():
			t.Fatal("the digester never waited")
		}
		panic("unreachable")
	}

	g.add(digestJob{pid: 1}, run)
	w := receiveWait(digestQuiet)
	clock.advance(60 * time.Millisecond)
	g.add(digestJob{pid: 2}, run) // another launch ran: the quiet starts again
	clock.advance(40 * time.Millisecond)
	w.fire <- clock.now()
	w = receiveWait(60 * time.Millisecond)
	clock.advance(60 * time.Millisecond)
	w.fire <- clock.now()
	for _, want := range []int{1, 2} {
		select {
		case pid := <-ran:
			if pid != want {
				t.Errorf("the digester hashed %d; want %d, in the order asked", pid, want)
			}
		case <-t.Context().Done():
			t.Fatalf("the digester never hashed %d", want)
		}
	}

	// Closed while it waits: the job runs at once, with an ended context.
	ctxs := make(chan error, 1)
	g.add(digestJob{pid: 3}, func(ctx context.Context, _ digestJob, _ []byte) { ctxs <- ctx.Err() })
	receiveWait(digestQuiet)
	g.close()
	if err := <-ctxs; err == nil {
		t.Error("a job queued when the digester closed ran with a live context")
	}
	if g.add(digestJob{pid: 4}, run) {
		t.Error("a closed digester took a job")
	}
}
