//go:build !unix

package launcher

import (
	"os"
	"os/exec"
)

// prepare does nothing: there are no process groups to set up.
func prepare(*exec.Cmd, *settings) {}

// terminate kills at once: there is no SIGTERM.
func terminate(pid int) error { return kill(pid) }

func kill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	return p.Kill()
}

// reap reaps the VM.
func reap(cmd *exec.Cmd, markGone func()) error {
	err := cmd.Wait()
	markGone()
	return err
}

const canTerminate = false

// pipeEmpty takes every pipe for empty: without a portable way to ask, a
// pipe is read for drainTimeout after the VM's exit, as before.
func pipeEmpty(*os.File) bool { return true }
