package node

import (
	"context"
	"sync"
	"testing"
	"time"
)

// keeperClock is the keeper's clock in TestKeeperAwaitsQuiet: it moves
// when the test says, and each wait the keeper starts is sent on waits,
// ended when the test sends on its channel.
type keeperClock struct {
	mu    sync.Mutex
	at    time.Time
	waits chan keeperWait
}

type keeperWait struct {
	d    time.Duration
	fire chan time.Time
}

func (c *keeperClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *keeperClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

func (c *keeperClock) after(d time.Duration) <-chan time.Time {
	w := keeperWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// TestKeeperAwaitsQuiet: the keeper copies nothing while copies are still
// being queued (a node's launches), and goes on once none has been queued
// for keepQuiet; the node's end stops its wait.
func TestKeeperAwaitsQuiet(t *testing.T) {
	t.Parallel()
	clock := &keeperClock{at: time.Unix(1000, 0), waits: make(chan keeperWait)}
	n := &Node{now: clock.now, after: clock.after}
	queued := func() { // what keepLater records
		n.mu.Lock()
		n.lastKeep = clock.now()
		n.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	await := func() <-chan bool {
		quiet := make(chan bool, 1)
		go func() { quiet <- n.awaitQuiet(ctx) }()
		return quiet
	}
	receiveWait := func(quiet <-chan bool, want time.Duration) keeperWait {
		t.Helper()
		select {
		case w := <-clock.waits:
			if w.d != want {
				t.Errorf("the keeper waits %s; want %s", w.d, want)
			}
			return w
		case ok := <-quiet:
			t.Fatalf("the keeper went on (%v) without waiting for quiet", ok)
		case <-t.Context().Done():
			t.Fatal("the keeper never waited")
		}
		panic("unreachable")
	}

	queued()
	quiet := await()
	w := receiveWait(quiet, keepQuiet)
	clock.advance(60 * time.Millisecond)
	queued() // another VM ran: the quiet starts again
	clock.advance(40 * time.Millisecond)
	w.fire <- clock.now()
	w = receiveWait(quiet, 60*time.Millisecond)
	clock.advance(60 * time.Millisecond)
	w.fire <- clock.now()
	if ok := <-quiet; !ok {
		t.Error("the keeper did not go on once the copies had quieted")
	}

	// Quiet already: no wait.
	clock.advance(time.Second)
	if ok := <-await(); !ok {
		t.Error("the keeper did not go on after a second of quiet")
	}

	// The node's end, while the keeper waits.
	queued()
	quiet = await()
	receiveWait(quiet, keepQuiet)
	cancel()
	if ok := <-quiet; ok {
		t.Error("the keeper went on after the node's end")
	}
}
