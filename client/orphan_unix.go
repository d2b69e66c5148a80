//go:build unix

package client

import (
	"os"
	"syscall"

	"github.com/vmre/vmre/internal/proctree"
)

// hostGone reports whether the process that started the VM has died: the VM
// was handed to another parent.
func hostGone(hostPid int) bool { return os.Getppid() != hostPid }

// killOrphanedGroup ends the VM's whole process tree once its host is gone,
// when the VM leads its process group, as VMs launched by vmre do. A dead
// host can no longer end the tree itself, and the VM's own children would
// outlive it. It first kills the descendants that left the group (setsid),
// found by their parent chain in /proc (Linux), then the group. It does
// not return then: the VM dies with its group.
func killOrphanedGroup() {
	if syscall.Getpgrp() != os.Getpid() {
		return
	}
	self := os.Getpid()
	proctree.Walk(self, func(pid int) bool {
		if st, err := proctree.ReadStat(pid); err == nil && st.Pgid != self {
			proctree.Signal(st, syscall.SIGKILL)
		}
		return false
	})
	syscall.Kill(0, syscall.SIGKILL) // 0: the caller's own process group
}
