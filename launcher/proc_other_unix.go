//go:build unix && !linux

package launcher

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; the lease ends such VMs when their host dies.
func setParentDeathSignal(*syscall.SysProcAttr, *settings) {}

// reap reaps the VM, then kills what is left of its process group: a
// group that still has members keeps its id, so this cannot hit another.
func reap(cmd *exec.Cmd, markGone func()) error {
	err := cmd.Wait()
	markGone()
	kill(cmd.Process.Pid)
	return err
}
