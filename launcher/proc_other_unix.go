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

// afterExit runs wait at once, on a goroutine of its own: reap waits for
// the VM's exit.
func afterExit(_ int, _ *exitWatch, wait func()) { go wait() }

// detach keeps os/exec's hold on the VM: reap waits with it.
func detach(*exec.Cmd) {}

// reap reaps the VM, then kills what is left of its process group. A group
// that still has members keeps its id; an empty one's id could in principle
// be taken by a new process between the reap and the kill (Linux closes
// that window with waitid WNOWAIT; kqueue could here).
func reap(cmd *exec.Cmd, pid int, markGone, killTree func()) (syscall.WaitStatus, error) {
	ws, err := waitCmd(cmd)
	markGone()
	kill(pid)
	killTree()
	return ws, err
}

// pipeState takes every pipe for empty and held: without a portable way
// to ask, a pipe is read for drainTimeout after the VM's exit.
func pipeState(*os.File) (readable, held bool) { return false, true }
