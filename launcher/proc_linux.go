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
// first, so that grandchildren go with the VM.
func reap(_ *exec.Cmd, pid int, markGone func()) (syscall.WaitStatus, error) {
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
