//go:build !linux

package launcher

import (
	"errors"
	"os/exec"
	"syscall"
)

// waitCmd waits for cmd with os/exec and returns its wait status; an exit
// with a code other than 0 is no error.
func waitCmd(cmd *exec.Cmd) (syscall.WaitStatus, error) {
	err := cmd.Wait()
	var ws syscall.WaitStatus
	if cmd.ProcessState == nil {
		return ws, err
	}
	ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		err = nil
	}
	return ws, err
}
