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

// detach releases os/exec's hold on the started VM: since Go 1.23 an
// os.Process keeps a pidfd open until it is waited for, and the launcher
// waits for its VMs itself (exitWatch, reap), with no descriptor per VM.
func detach(cmd *exec.Cmd) { cmd.Process.Release() }

// afterExit runs wait on a goroutine of its own once the VM has exited
// (w tells, from SIGCHLD). Until then the VM costs no goroutine.
func afterExit(pid int, w *exitWatch, wait func()) {
	w.notify(pid, func() { go wait() })
}

// reap reaps the VM pid, which has exited: it is a zombie, so its pid, and
// so its process group id, cannot have been reused. It kills the group
// and the rest of the VM's tree (killTree) first, so that grandchildren go
// with the VM.
func reap(_ *exec.Cmd, pid int, markGone, killTree func()) (syscall.WaitStatus, error) {
	markGone()
	kill(pid)
	killTree()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws, err
		}
	}
}

// pipeState reports whether the pipe f has something to read, and whether
// a writer still holds it open. A pipe that no writer holds will end: its
// reader reaches the end of it, however slowly it reads.
func pipeState(f *os.File) (readable, held bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, true
	}
	var revents int16
	var perr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, perr = unix.Poll(fds, 0); perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	}); err != nil || perr != nil {
		return false, true
	}
	return revents&unix.POLLIN != 0, revents&unix.POLLHUP == 0
}
