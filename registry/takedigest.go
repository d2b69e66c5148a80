package registry

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
	"time"
)

// TakeDigest takes the digest of v from the bytes that run: the executable
// of process pid, which must have been started from v's Command (on Linux,
// /proc/PID/exe, which names the file the kernel executed even when it has
// been renamed or replaced since). It hashes it on a goroutine of the
// registry's, one file at a time, once no digest has been asked for in
// 100 ms, so that digests taken after launches do not compete with them
// for the CPUs, and records it: v.Digest holds it
// from then on.
//
// done, when not nil, is called once with the digest or the reason there
// is none: on the registry's goroutine, or at once on the caller's when v's
// digest is known already (a pinned VM's always is) or the registry is
// closed (fs.ErrClosed). A process that does not run v's file as it was
// loaded (it was replaced since, or pid is another process) gives an error
// and no digest; so does a platform without /proc/PID/exe. Close stops the
// digests under way and waits for the goroutine.
func (r *Registry) TakeDigest(v *VM, pid int, done func(Digest, error)) {
	if done == nil {
		done = func(Digest, error) {}
	}
	d, known, ident := v.digestState()
	if known {
		done(d, nil)
		return
	}
	if !r.bg.add(digestJob{v: v, pid: pid, ident: ident.id, done: done}, r.takeDigest) {
		done(Digest{}, fmt.Errorf("take the digest of VM %s: the registry is closed (%w)", v.id, fs.ErrClosed))
	}
}

// takeDigest hashes a job's executable and records its digest.
func (r *Registry) takeDigest(ctx context.Context, j digestJob, buf []byte) {
	d, err := exeDigest(ctx, j.pid, j.ident, buf)
	if err != nil {
		j.done(Digest{}, fmt.Errorf("take the digest of VM %s from process %d: %w", j.v.id, j.pid, err))
		return
	}
	j.v.setDigest(d)
	d, _, _ = j.v.digestState() // the first digest recorded stands
	j.done(d, nil)
}

// digestJob is a digest to take.
type digestJob struct {
	v     *VM
	pid   int
	ident fileID // the VM's file as loaded
	done  func(Digest, error)
}

// digestQuiet is how long the digester waits after the last TakeDigest
// before it hashes: a node that starts dozens of VMs asks for a digest as
// each runs, and hashing them then, 14 MB each, took a third of the node's
// CPU time from Run to all running (docs/PERFORMANCE.md, "A node of 64
// VMs"); once the launches have quieted down, it takes the CPUs from none.
const digestQuiet = 100 * time.Millisecond

// digester runs digest jobs on one goroutine, started when there is work
// and ended when there is none. Each job waits until no job has been added
// for digestQuiet.
type digester struct {
	mu      sync.Mutex
	queue   []digestJob
	last    time.Time // when the last job was added
	running bool
	closed  bool
	ctx     context.Context // ended by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// The clock, time.Now and time.After when nil (tests set theirs).
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// add queues j for run, and reports whether it did: not once closed.
func (g *digester) add(j digestJob, run func(context.Context, digestJob, []byte)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.now == nil {
		g.now, g.after = time.Now, time.After
	}
	g.queue = append(g.queue, j)
	g.last = g.now()
	if g.running {
		return true
	}
	if g.ctx == nil {
		g.ctx, g.cancel = context.WithCancel(context.Background())
	}
	g.running = true
	g.wg.Go(func() {
		var buf []byte
		for {
			j, ok := g.next()
			if !ok {
				return
			}
			if buf == nil {
				buf = make([]byte, copyBufferSize)
			}
			run(g.ctx, j, buf)
		}
	})
	return true
}

// next waits until no job has been added for digestQuiet, and returns the
// first job of the queue; false when the queue is empty, and the digester's
// goroutine ends. Once closed, it returns the jobs without waiting: they
// fail with the digester's context.
func (g *digester) next() (digestJob, bool) {
	g.mu.Lock()
	for !g.closed && len(g.queue) > 0 {
		wait := g.last.Add(digestQuiet).Sub(g.now())
		if wait <= 0 {
			break
		}
		g.mu.Unlock()
		select {
		case <-g.after(wait):
		case <-g.ctx.Done():
		}
		g.mu.Lock()
	}
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.running = false
		return digestJob{}, false
	}
	j := g.queue[0]
	g.queue = g.queue[1:]
	return j, true
}

// close ends the jobs under way (they fail with the context's error),
// fails the queued ones, and waits for the goroutine.
func (g *digester) close() {
	g.mu.Lock()
	g.closed = true
	if g.cancel != nil {
		g.cancel()
	}
	g.mu.Unlock()
	g.wg.Wait()
}
