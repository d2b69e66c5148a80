//go:build unix && !linux

package launcher

import (
	"os"
	"os/exec"
	"syscall"
)

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; the lease ends such VMs when their host dies.
func setParentDeathSignal(*syscall.SysProcAttr, *settings) {}

// reap reaps the VM, then kills what is left of its process group. A group
// that still has members keeps its id; an empty one's id could in principle
// be taken by a new process between the reap and the kill (Linux closes
// that window with waitid WNOWAIT; kqueue could here).
func reap(cmd *exec.Cmd, markGone func()) error {
	err := cmd.Wait()
	markGone()
	kill(cmd.Process.Pid)
	return err
}

// pipeEmpty takes every pipe for empty: without a portable way to ask, a
// pipe is read for drainTimeout after the VM's exit, as before.
func pipeEmpty(*os.File) bool { return true }
