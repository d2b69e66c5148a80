package launcher

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel signal the VM when the host thread
// that started it dies. Native VMs get SIGTERM, which they handle
// gracefully; rpcchainvm plugins ignore SIGTERM, so legacy VMs get SIGKILL.
func setParentDeathSignal(attr *syscall.SysProcAttr, s *settings) {
	attr.Pdeathsig = syscall.SIGTERM
	if s.Legacy {
		attr.Pdeathsig = syscall.SIGKILL
	}
}

// detach releases os/exec's hold on the started VM: since Go 1.23 an
// os.Process keeps a pidfd open until it is waited for, and the launcher
// waits for its VMs itself (exitWatch, reap), with no descriptor per VM.
func detach(cmd *exec.Cmd) { cmd.Process.Release() }

// reap waits for the VM pid to exit without reaping it (w tells, from
// SIGCHLD): while it is a zombie its pid, and so its process group id,
// cannot be reused. That is when the group is killed, so grandchildren go
// with the VM, and then the VM is reaped.
func reap(_ *exec.Cmd, pid int, markGone func(), w *exitWatch) (syscall.WaitStatus, error) {
	<-w.await(pid)
	markGone()
	kill(pid)
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws, err
		}
	}
}
