package launcher

import (
	"os"
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
	if !awaitExitPolled(pid) {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
	markGone()
	kill(pid)
	return cmd.Wait()
}

// awaitExitPolled waits for the process to exit, without reaping it, through
// a pidfd in the runtime's network poller: a goroutine blocked in waitid
// holds an OS thread for the VM's whole life, and Go ends the program at
// 10,000 threads. It returns false, at once, where pidfds cannot be polled
// (Linux before 5.10).
func awaitExitPolled(pid int) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		return err != unix.EINTR && (err != nil || info.Signo != 0) // Signo is 0 while it runs
	})
	return err == nil
}

// pipeEmpty reports whether nothing is left to read in the pipe f.
func pipeEmpty(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	n, ierr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ierr != nil {
		return true
	}
	return n == 0
}
