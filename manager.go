package vmre

import (
	"context"
	"sync"
)

// exitNotifier is implemented by runtimes that know when they end. The
// manager forgets such a runtime once it has ended, and waits for it in Stop.
type exitNotifier interface {
	Done() <-chan struct{}
	// AfterExit arranges for f to run once the runtime has ended, like
	// context.AfterFunc; stop cancels that.
	AfterExit(f func()) (stop func() bool)
}

type manager struct {
	mu       sync.Mutex
	runtimes map[Stopper]func() bool // runtime -> cancels its AfterExit
}

// NewManager returns a Manager. Runtimes are tracked by identity, so a
// Stopper must be comparable: use a pointer (as *launcher.Runtime is). A tracked runtime that has a Done channel
// leaves the manager by itself when it ends; Stop stops all runtimes in
// parallel and waits for each one that has a Done channel.
func NewManager() Manager {
	return &manager{runtimes: make(map[Stopper]func() bool)}
}

func (m *manager) TrackRuntime(runtime Stopper) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runtimes[runtime]; ok {
		return
	}
	cancel := func() bool { return false }
	if n, ok := runtime.(exitNotifier); ok {
		cancel = n.AfterExit(func() { m.forget(runtime) })
	}
	m.runtimes[runtime] = cancel
}

func (m *manager) forget(runtime Stopper) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.runtimes, runtime)
}

// Len reports how many runtimes are tracked. It is used by tests.
func (m *manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.runtimes)
}

func (m *manager) Stop(ctx context.Context) {
	m.mu.Lock()
	runtimes := make([]Stopper, 0, len(m.runtimes))
	for r, cancel := range m.runtimes {
		cancel()
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
		n, ok := r.(exitNotifier)
		if !ok {
			continue
		}
		select {
		case <-n.Done():
		case <-ctx.Done():
			return
		}
	}
}
