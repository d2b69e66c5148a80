package launcher

import (
	"sync"

	"github.com/vmre/vmre/internal/proctree"
)

// snapshots share readings of every /proc/*/stat among the stops that ask
// at once: sixteen VMs stopped together read /proc two or three times, not
// sixteen. A stop that asks while a reading is under way waits for the next
// one, which starts after it asked, so that no process it must find is
// missed; the first to ask for that next reading makes it.
var snapshots struct {
	mu      sync.Mutex
	current *snapshot // the reading under way, or nil
	next    *snapshot // the reading to come, once current is done, or nil
}

// snapshot is one reading of /proc.
type snapshot struct {
	done chan struct{} // closed once all is read
	all  []proctree.Stat
}

// readProcesses returns a reading of every process's stat that started
// after the call.
func readProcesses() []proctree.Stat {
	snapshots.mu.Lock()
	if snapshots.current == nil {
		s := &snapshot{done: make(chan struct{})}
		snapshots.current = s
		snapshots.mu.Unlock()
		return s.read()
	}
	if s := snapshots.next; s != nil {
		snapshots.mu.Unlock()
		<-s.done
		return s.all
	}
	s := &snapshot{done: make(chan struct{})}
	snapshots.next = s
	before := snapshots.current
	snapshots.mu.Unlock()
	<-before.done
	snapshots.mu.Lock()
	snapshots.current, snapshots.next = s, nil
	snapshots.mu.Unlock()
	return s.read()
}

// read makes the reading, and ends it as the one under way.
func (s *snapshot) read() []proctree.Stat {
	s.all = proctree.All()
	snapshots.mu.Lock()
	if snapshots.current == s {
		snapshots.current = nil
	}
	snapshots.mu.Unlock()
	close(s.done)
	return s.all
}
