package vmre

import (
	"context"
	"sync"
)

// doner is implemented by runtimes that tell when they have ended, as
// *launcher.Runtime does: the manager forgets them once ended, and waits
// for them in Stop.
type doner interface {
	Done() <-chan struct{}
}

type manager struct {
	mu       sync.Mutex
	runtimes map[Stopper]struct{}
}

// NewManager returns a Manager: what a node that launches VMs itself with
// package launcher, without a supervisor, uses to stop them all at its
// shutdown (a node of package node has its own). Track each runtime once
// Launch returns it:
//
//	rt, err := l.Launch(ctx, cmd)
//	if err == nil {
//		m.TrackRuntime(rt)
//	}
//	...
//	m.Stop(shutdownCtx) // every VM's SIGTERM at once, then waits for all
//
// Runtimes are tracked by identity, so a Stopper must be comparable: use a
// pointer (as *launcher.Runtime is). A runtime with a Done channel that
// has ended is forgotten at the next TrackRuntime; Stop stops all the
// runtimes in parallel and waits for each one that has a Done channel.
func NewManager() Manager {
	return &manager{runtimes: make(map[Stopper]struct{})}
}

func (m *manager) TrackRuntime(runtime Stopper) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetEnded()
	m.runtimes[runtime] = struct{}{}
}

// forgetEnded drops the runtimes that have ended, under mu: the manager
// holds no more than the runtimes that ran at its last TrackRuntime.
func (m *manager) forgetEnded() {
	for r := range m.runtimes {
		if d, ok := r.(doner); ok && ended(d) {
			delete(m.runtimes, r)
		}
	}
}

func ended(d doner) bool {
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

// Len reports how many runtimes are tracked that have not ended. It is
// used by tests.
func (m *manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetEnded()
	return len(m.runtimes)
}

func (m *manager) Stop(ctx context.Context) {
	m.mu.Lock()
	runtimes := make([]Stopper, 0, len(m.runtimes))
	for r := range m.runtimes {
		runtimes = append(runtimes, r)
	}
	clear(m.runtimes)
	m.mu.Unlock()

	// Stop never blocks, so calling it in a loop already stops them all
	// in parallel; then wait for each one that can tell when it is over.
	for _, r := range runtimes {
		r.Stop(ctx)
	}
	for _, r := range runtimes {
		d, ok := r.(doner)
		if !ok {
			continue
		}
		select {
		case <-d.Done():
		case <-ctx.Done():
			return
		}
	}
}
