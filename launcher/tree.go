package launcher

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vmre/vmre/internal/proctree"
)

// subreaping is set while a Subreaper runs: the process then adopts the
// orphans of its VMs' trees, which a tree looks for among its children.
var subreaping atomic.Bool

// tree is what of a VM's process tree its process group's signals do not
// reach: the descendants that left the group (setsid, setpgid). The stop
// signals them with the group (docs/RELIABILITY.md, "No survivors").
//
// Under a Subreaper (a node), a descendant whose parent dies is handed to
// the host: once the VM has died, the host's adopted children that are in
// the VM's process group, or whose environment holds the VM's marker, are
// the VM's, with their descendants, and get SIGKILL, as what is left of the
// group does. Without one, nothing hands them over: the stop looks for
// them along the parent chains from the VM, in one reading of every
// /proc/*/stat, before the VM is told to stop (once it has died, no chain
// leads from it to them; its own threads' entries are not read, for the
// kernel would take longer to tear it down), sends them what the group is
// sent, and remembers them for the reap. That reading costs a stop 0.5-2
// ms (docs/PERFORMANCE.md), which a node, running a Subreaper, does not
// pay. Outside Linux a tree finds nothing: the group's signals are all
// there is.
type tree struct {
	pid    int    // the VM, which leads its process group
	marker string // an entry of the VM's environment no other launch has: its token, or its legacy listener's address

	mu   sync.Mutex
	seen map[int]proctree.Stat // found outside the group, by pid
}

// find returns the processes of the tree outside the VM's group to signal
// with the group: without a Subreaper, those along the parent chains from
// the VM now and those found before; under one, none (kill finds them once
// they are orphans). Nil for a nil tree (a VM that did not start).
func (t *tree) find() []proctree.Stat {
	if t == nil {
		return nil
	}
	if subreaping.Load() {
		return t.remember(nil)
	}
	return t.remember(t.outsideGroup(proctree.Descendants(readProcesses(), t.pid)))
}

// kill sends SIGKILL to every process of the tree outside the VM's group
// that was found before, and, under a Subreaper, to those the host
// adopted: the end of a VM that has died.
func (t *tree) kill() {
	if t == nil {
		return
	}
	var found []proctree.Stat
	if subreaping.Load() {
		var kids []proctree.Stat
		for _, c := range proctree.Children(os.Getpid()) {
			if st, err := proctree.ReadStat(c); err == nil {
				kids = append(kids, st)
			}
		}
		if roots := t.adopted(kids, &found); len(roots) > 0 {
			found = append(found, proctree.Descendants(readProcesses(), roots...)...)
		}
	}
	signalAll(t.remember(t.outsideGroup(found)), syscall.SIGKILL)
}

// adopted returns, among ps, the host's adopted children that are the
// VM's: in its process group, or with its marker in their environment.
// They are added to found.
func (t *tree) adopted(ps []proctree.Stat, found *[]proctree.Stat) []int {
	var roots []int
	self := os.Getpid()
	for _, st := range ps {
		if st.PPid != self || st.Zombie() || isOwnChild(st.Pid) {
			continue
		}
		if st.Pgid == t.pid || proctree.HasEnv(st.Pid, t.marker) {
			roots = append(roots, st.Pid)
			*found = append(*found, st)
		}
	}
	return roots
}

// outsideGroup keeps the processes of ps that are alive and outside the
// VM's group; the group's own signals reach the others.
func (t *tree) outsideGroup(ps []proctree.Stat) []proctree.Stat {
	out := ps[:0]
	for _, st := range ps {
		if st.Pid != t.pid && st.Pgid != t.pid && !st.Zombie() {
			out = append(out, st)
		}
	}
	return out
}

// remember adds ps to the processes found before, drops those of them
// that are gone, and returns them all.
func (t *tree) remember(ps []proctree.Stat) []proctree.Stat {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = make(map[int]proctree.Stat)
	}
	for _, st := range ps {
		t.seen[st.Pid] = st
	}
	out := make([]proctree.Stat, 0, len(t.seen))
	for pid, st := range t.seen {
		if now, err := proctree.ReadStat(pid); err != nil || now.Start != st.Start || now.Zombie() {
			delete(t.seen, pid)
			continue
		}
		out = append(out, st)
	}
	return out
}

// signalAll sends each of sigs, in order, to each process of ps.
func signalAll(ps []proctree.Stat, sigs ...syscall.Signal) {
	for _, p := range ps {
		for _, sig := range sigs {
			proctree.Signal(p, sig)
		}
	}
}
