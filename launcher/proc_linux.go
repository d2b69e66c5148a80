package launcher

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
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

// reap waits for the VM to exit without reaping it (waitid WNOWAIT): while
// it is a zombie its pid, and so its process group id, cannot be reused.
// That is when the group is killed, so grandchildren go with the VM, and
// then the VM is reaped.
func reap(cmd *exec.Cmd, markGone func()) error {
	pid := cmd.Process.Pid
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	markGone()
	kill(pid)
	return cmd.Wait()
}
