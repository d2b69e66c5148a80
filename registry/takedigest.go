package registry

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
)

// TakeDigest takes the digest of v from the bytes that run: the executable
// of process pid, which must have been started from v's Command (on Linux,
// /proc/PID/exe, which names the file the kernel executed even when it has
// been renamed or replaced since). It hashes it on a goroutine of the
// registry's, one file at a time, so that digests taken after launches do
// not compete with them for the CPUs, and records it: v.Digest holds it
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

// digester runs digest jobs on one goroutine, started when there is work
// and ended when there is none.
type digester struct {
	mu      sync.Mutex
	queue   []digestJob
	running bool
	closed  bool
	ctx     context.Context // ended by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// add queues j for run, and reports whether it did: not once closed.
func (g *digester) add(j digestJob, run func(context.Context, digestJob, []byte)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.queue = append(g.queue, j)
	if g.running {
		return true
	}
	if g.ctx == nil {
		g.ctx, g.cancel = context.WithCancel(context.Background())
	}
	g.running = true
	g.wg.Go(func() {
		buf := make([]byte, copyBufferSize)
		for {
			g.mu.Lock()
			if len(g.queue) == 0 {
				g.running = false
				g.mu.Unlock()
				return
			}
			j := g.queue[0]
			g.queue = g.queue[1:]
			g.mu.Unlock()
			run(g.ctx, j, buf)
		}
	})
	return true
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
