//go:build unix

package client

import (
	"os"
	"syscall"
)

// hostGone reports whether the process that started the VM has died: the VM
// was handed to another parent.
func hostGone(hostPid int) bool { return os.Getppid() != hostPid }

// killOrphanedGroup ends the VM's whole process group once its host is gone,
// when the VM leads that group, as VMs launched by vmre do. A dead host can
// no longer kill the group itself, and the VM's own children would outlive
// it. It does not return then: the VM dies with its group.
func killOrphanedGroup() {
	if syscall.Getpgrp() != os.Getpid() {
		return
	}
	syscall.Kill(0, syscall.SIGKILL) // 0: the caller's own process group
}
