package launcher

import "sync"

// ownChildren are the VMs the Launchers of this process have started and
// not yet reaped. A Subreaper reaps the other children of the process that
// it adopted, and must leave these to their Runtime, which reaps each by
// its pid: their exit statuses are the Runtime's. The list is the
// process's, as the subreaper role is.
var ownChildren struct {
	// starting is held for reading by each start, from the fork until the
	// child is listed, and for writing by a Subreaper's pass: a VM that
	// dies at once is never taken for an adopted process.
	starting sync.RWMutex
	mu       sync.Mutex
	pids     map[int]struct{}
}

// startChild runs start, which forks a VM and returns its pid (0 when it
// failed), and lists the VM among the process's own children.
func startChild(start func() (int, error)) error {
	ownChildren.starting.RLock()
	defer ownChildren.starting.RUnlock()
	pid, err := start()
	if err == nil && pid > 0 {
		ownChildren.mu.Lock()
		if ownChildren.pids == nil {
			ownChildren.pids = make(map[int]struct{})
		}
		ownChildren.pids[pid] = struct{}{}
		ownChildren.mu.Unlock()
	}
	return err
}

// reapedChild takes a VM off the list once its Runtime has reaped it.
func reapedChild(pid int) {
	ownChildren.mu.Lock()
	defer ownChildren.mu.Unlock()
	delete(ownChildren.pids, pid)
}

// isOwnChild reports whether pid is a VM of this process's Launchers.
func isOwnChild(pid int) bool {
	ownChildren.mu.Lock()
	defer ownChildren.mu.Unlock()
	_, ok := ownChildren.pids[pid]
	return ok
}
