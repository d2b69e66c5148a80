//go:build unix

package launcher

import (
	"errors"
	"os/exec"
	"syscall"
)

// prepare puts the VM in a process group of its own, so that a stop signal
// reaches every process it started. The Runtime stops the VM, not the
// command's Context (exec.CommandContext): its Cancel and WaitDelay go, so
// that os/exec starts no goroutine to watch it, which only cmd.Wait, which
// the launcher does not call on Linux (detach), would end.
func prepare(cmd *exec.Cmd, s *settings) {
	cmd.Cancel, cmd.WaitDelay = nil, 0
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	setParentDeathSignal(cmd.SysProcAttr, s)
}

// signalGroup sends sig to the VM's process group. A group that is already
// gone is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// termSignals are what terminate sends, in order; a VM's descendants
// outside its group get them too.
var termSignals = []syscall.Signal{syscall.SIGTERM, syscall.SIGCONT}

// terminate sends SIGTERM to the VM's group, then SIGCONT, as systemd
// does: a VM stopped by SIGSTOP (a debugger, a job control stop) gets the
// SIGTERM once it runs again, and so exits gracefully instead of sitting
// out the graceful timeout until SIGKILL. A VM that runs ignores SIGCONT.
func terminate(pid int) error {
	if err := signalGroup(pid, syscall.SIGTERM); err != nil {
		return err
	}
	return signalGroup(pid, syscall.SIGCONT)
}

func kill(pid int) error { return signalGroup(pid, syscall.SIGKILL) }

// resume sends the group SIGCONT.
func resume(pid int) error { return signalGroup(pid, syscall.SIGCONT) }

// canTerminate reports whether a graceful stop exists on this system.
const canTerminate = true
