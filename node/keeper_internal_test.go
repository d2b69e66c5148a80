package node

import (
	"context"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestKeeperAwaitsQuiet: the keeper copies nothing while copies are still
// being queued (a node's launches), and goes on once none has been queued
// for keepQuiet; the node's end stops its wait.
func TestKeeperAwaitsQuiet(t *testing.T) {
	t.Parallel()
	clock := vmretest.NewStepClock(time.Unix(1000, 0))
	n := &Node{now: clock.Now, after: clock.After}
	queued := func() { // what keepLater records
		n.mu.Lock()
		n.lastKeep = clock.Now()
		n.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	await := func() <-chan bool {
		quiet := make(chan bool, 1)
		go func() { quiet <- n.awaitQuiet(ctx) }()
		return quiet
	}

	queued()
	quiet := await()
	w := vmretest.NextWait(t, clock, keepQuiet, quiet)
	clock.Advance(60 * time.Millisecond)
	queued() // another VM ran: the quiet starts again
	clock.Advance(40 * time.Millisecond)
	clock.Fire(w)
	w = vmretest.NextWait(t, clock, 60*time.Millisecond, quiet)
	clock.Advance(60 * time.Millisecond)
	clock.Fire(w)
	if ok := <-quiet; !ok {
		t.Error("the keeper did not go on once the copies had quieted")
	}

	// Quiet already: no wait.
	clock.Advance(time.Second)
	if ok := <-await(); !ok {
		t.Error("the keeper did not go on after a second of quiet")
	}

	// The node's end, while the keeper waits.
	queued()
	quiet = await()
	vmretest.NextWait(t, clock, keepQuiet, quiet)
	cancel()
	if ok := <-quiet; ok {
		t.Error("the keeper went on after the node's end")
	}
}
