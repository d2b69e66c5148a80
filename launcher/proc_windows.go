//go:build !unix

package launcher

import (
	"os"
	"os/exec"
	"syscall"
)

// prepare does nothing: there are no process groups to set up.
func prepare(*exec.Cmd, *settings) {}

// termSignals are none: there is no process tree to signal.
var termSignals []syscall.Signal

// terminate kills at once: there is no SIGTERM.
func terminate(pid int) error { return kill(pid) }

// resume does nothing: processes are not stopped by signals here.
func resume(int) error { return nil }

func kill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	return p.Kill()
}

// afterExit runs wait at once, on a goroutine of its own: reap waits for
// the VM's exit.
func afterExit(_ int, _ *exitWatch, wait func()) { go wait() }

// detach keeps os/exec's hold on the VM: reap waits with it.
func detach(*exec.Cmd) {}

// reap reaps the VM.
func reap(cmd *exec.Cmd, _ int, markGone, _ func()) (syscall.WaitStatus, error) {
	ws, err := waitCmd(cmd)
	markGone()
	return ws, err
}

const canTerminate = false

// pipeState takes every pipe for empty and held: without a portable way
// to ask, a pipe is read for drainTimeout after the VM's exit.
func pipeState(*os.File) (readable, held bool) { return false, true }
