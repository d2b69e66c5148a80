package launcher

import (
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

// waitExited blocks until the process has exited, without reaping it: while
// it is a zombie its pid, and so its process group id, cannot be reused, so
// the group can still be signalled safely.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
