package registry

import (
	"context"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestDigesterWaitsForQuiet: the digester hashes nothing while digests are
// still being asked for (a node's launches), and takes them all, in order,
// once none has been asked for in digestQuiet; closed, it fails what is
// queued at once rather than wait.
func TestDigesterWaitsForQuiet(t *testing.T) {
	t.Parallel()
	clock := vmretest.NewStepClock(time.Unix(1000, 0))
	g := &digester{now: clock.Now, after: clock.After}
	ran := make(chan int, 3)
	run := func(_ context.Context, j digestJob, _ []byte) { ran <- j.pid }

	g.add(digestJob{pid: 1}, run)
	w := vmretest.NextWait(t, clock, digestQuiet, ran)
	clock.Advance(60 * time.Millisecond)
	g.add(digestJob{pid: 2}, run) // another launch ran: the quiet starts again
	clock.Advance(40 * time.Millisecond)
	clock.Fire(w)
	w = vmretest.NextWait(t, clock, 60*time.Millisecond, ran)
	clock.Advance(60 * time.Millisecond)
	clock.Fire(w)
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
	vmretest.NextWait(t, clock, digestQuiet, ctxs)
	g.close()
	if err := <-ctxs; err == nil {
		t.Error("a job queued when the digester closed ran with a live context")
	}
	if g.add(digestJob{pid: 4}, run) {
		t.Error("a closed digester took a job")
	}
}
