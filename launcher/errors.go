package launcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"

	"github.com/vmre/vmre"
)

// Phase is the part of a launch, or of a stop, that failed.
type Phase int

const (
	// PhaseConfig: the Launcher's configuration or the command is not
	// valid. The error matches vmre.ErrInvalidConfig.
	PhaseConfig Phase = iota + 1
	// PhaseListen: the engine could not take the launch: a legacy
	// listener could not listen, or the engine is closed or full.
	PhaseListen
	// PhaseExec: the process did not start. The error unwraps to the
	// system's (fs.ErrNotExist, fs.ErrPermission, syscall.ENOEXEC).
	PhaseExec
	// PhaseHandshakeWait: the VM started but did not complete its
	// handshake: it exited first (Exit is set; matches
	// vmre.ErrProcessNotFound), did not call back in time (matches
	// vmre.ErrHandshakeTimeout and vmre.ErrProcessNotFound), or the
	// launch's context ended (unwraps to its cause).
	PhaseHandshakeWait
	// PhaseVersion: the VM speaks a protocol version the host does not.
	// The error unwraps to a *vmre.VersionMismatchError.
	PhaseVersion
	// PhaseStop: a stop did not end gracefully (Runtime.Shutdown).
	PhaseStop
	// PhaseReady: the VM called back with an address where the host could
	// not connect: nothing listens there (the engine refused the call,
	// failed_precondition, and the error unwraps to the dial's,
	// syscall.ECONNREFUSED), or the listener accepts nothing, its queue full,
	// until the handshake timeout. The VM was stopped.
	PhaseReady
)

func (p Phase) String() string {
	switch p {
	case PhaseConfig:
		return "config"
	case PhaseListen:
		return "listen"
	case PhaseExec:
		return "exec"
	case PhaseHandshakeWait:
		return "handshake wait"
	case PhaseVersion:
		return "version"
	case PhaseStop:
		return "stop"
	case PhaseReady:
		return "ready"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// LaunchError is the error of a failed launch, or of a stop that was not
// graceful, in the manner of *fs.PathError: Phase says which part failed,
// Err is the cause. Every launch error matches vmre.ErrHandshakeFailed and
// its text starts "handshake failed: "; PhaseStop errors start "stop: ".
// errors.Is and errors.As see through it to the cause and the root
// package's sentinels.
type LaunchError struct {
	// Phase is the part that failed.
	Phase Phase
	// VM is the VM's name; Path the command's path.
	VM, Path string
	// Pid is the VM's process id, or 0 when it never started. The process
	// is gone by the time Launch returns the error.
	Pid int
	// Timeout is the handshake timeout that passed, or for PhaseStop the
	// graceful timeout; zero otherwise.
	Timeout time.Duration
	// Exit is how the VM ended, when it ended before its handshake (or,
	// for PhaseStop, how the stop ended it).
	Exit *Exit
	// Stderr holds the VM's last stderr lines (Runtime.LastStderr), when
	// it ran.
	Stderr []string
	// Output holds the VM's last lines of stdout and stderr, marked by
	// stream (Runtime.LastOutput), when it ran: the error's text shows
	// them.
	Output []string
	// Diagnosis, for PhaseExec, is what the file itself tells of why the
	// system refused it ("it is an ELF program built for arm64; this
	// machine is amd64: ..."), or "".
	Diagnosis string
	// Err is the cause.
	Err error
}

func (e *LaunchError) Error() string {
	var b strings.Builder
	if e.Phase == PhaseStop {
		b.WriteString("stop: ")
	} else {
		b.WriteString("handshake failed: ")
	}
	switch {
	case e.Phase == PhaseConfig:
		b.WriteString("invalid launch: ")
		b.WriteString(e.Err.Error())
	case e.Phase == PhaseListen:
		b.WriteString("engine: ")
		b.WriteString(e.Err.Error())
	case e.Phase == PhaseExec:
		fmt.Fprintf(&b, "exec %s: %v", e.Path, execCause(e.Err))
		if e.Diagnosis != "" {
			b.WriteString(": ")
			b.WriteString(e.Diagnosis)
		}
	case e.Phase == PhaseReady:
		b.WriteString(e.Err.Error())
		var full *notAcceptedError
		if errors.As(e.Err, &full) {
			b.WriteString("; a VM accepts connections on the listener it announces (it may serve it only once answered, but its queue must not be full)")
		} else {
			b.WriteString("; a VM listens on the address it announces before it calls Initialize")
		}
	case e.Phase == PhaseVersion:
		b.WriteString(e.Err.Error())
		var mismatch *vmre.VersionMismatchError
		if errors.As(e.Err, &mismatch) {
			b.WriteString("; ")
			b.WriteString(mismatch.Hint())
		}
	case e.Exit != nil && e.Phase == PhaseHandshakeWait:
		b.WriteString("the VM exited before its handshake: ")
		b.WriteString(e.Exit.String())
	case errors.Is(e.Err, vmre.ErrHandshakeTimeout):
		fmt.Fprintf(&b, "timeout: the VM did not call back within %s; a VM plugin reads the engine's "+
			"address from its environment and calls back within the handshake timeout", e.Timeout)
	case e.Phase == PhaseHandshakeWait:
		b.WriteString("cancelled while waiting for the VM to call back: ")
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.Err.Error())
	}
	lines, what := e.Output, "output"
	if len(lines) == 0 {
		lines, what = e.Stderr, "stderr"
	}
	if len(lines) > 0 && (e.Exit != nil || e.Phase == PhaseHandshakeWait || e.Phase == PhaseReady) {
		b.WriteString("\nlast " + what + " lines of the VM:\n\t")
		b.WriteString(strings.Join(lines, "\n\t"))
	}
	return b.String()
}

// execCause is the cause of a failed exec without the path and operation
// that LaunchError's text already names: os/exec reports "fork/exec PATH:
// CAUSE" or `exec: "NAME": CAUSE`.
func execCause(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	if ee, ok := errors.AsType[*exec.Error](err); ok {
		return ee.Err
	}
	return err
}

// Unwrap returns the cause and the root package's sentinels of the case,
// for errors.Is and errors.As.
func (e *LaunchError) Unwrap() []error {
	errs := []error{e.Err}
	if e.Phase != PhaseStop {
		errs = append(errs, vmre.ErrHandshakeFailed)
	}
	switch {
	case e.Phase == PhaseConfig:
		errs = append(errs, vmre.ErrInvalidConfig)
	case e.Phase == PhaseHandshakeWait && (e.Exit != nil || errors.Is(e.Err, vmre.ErrHandshakeTimeout)):
		errs = append(errs, vmre.ErrProcessNotFound)
	}
	return errs
}

// errKilled is the cause of a PhaseStop error: the VM did not exit on its
// own within the graceful timeout.
var errKilled = errors.New("the VM did not exit within the graceful timeout and was killed")
