package launcher

import (
	"fmt"
	"syscall"
	"time"
)

// Stage is how far the stop sequence had gone when a VM ended.
type Stage int

const (
	// StageNone: the VM ended on its own; nobody asked it to stop.
	StageNone Stage = iota
	// StageShutdown: the VM's /vm.VM/Shutdown was called (LegacyShutdown).
	StageShutdown
	// StageTerm: the VM's process group was sent SIGTERM.
	StageTerm
	// StageKill: the VM's process group was sent SIGKILL.
	StageKill
)

func (s Stage) String() string {
	switch s {
	case StageShutdown:
		return "shutdown"
	case StageTerm:
		return "sigterm"
	case StageKill:
		return "sigkill"
	}
	return "none"
}

// StopReason says why a stop stage was entered.
type StopReason int

const (
	// ReasonStop: the host called Stop.
	ReasonStop StopReason = iota + 1
	// ReasonHandshakeRefused: the engine refused the VM's protocol
	// version, and Launch stops it.
	ReasonHandshakeRefused
	// ReasonGraceExpired: the graceful timeout passed after SIGTERM.
	ReasonGraceExpired
	// ReasonContextEnded: the context given to Stop ended first.
	ReasonContextEnded
	// ReasonHandshakeAbandoned: the handshake timed out or Launch's
	// context ended: the VM gets no grace.
	ReasonHandshakeAbandoned
	// ReasonNoSIGTERM: the system has no graceful stop signal.
	ReasonNoSIGTERM
)

func (r StopReason) String() string {
	switch r {
	case ReasonStop:
		return "stop requested"
	case ReasonHandshakeRefused:
		return "the handshake was refused"
	case ReasonGraceExpired:
		return "the graceful timeout passed"
	case ReasonContextEnded:
		return "the stop's context ended"
	case ReasonHandshakeAbandoned:
		return "the handshake was abandoned"
	case ReasonNoSIGTERM:
		return "this system has no SIGTERM"
	}
	return fmt.Sprintf("StopReason(%d)", int(r))
}

// Exit is how a VM ended.
type Exit struct {
	// Code is the exit code, or -1 when a signal ended the VM.
	Code int
	// Signal names the signal that ended the VM ("killed", "terminated"),
	// or is empty.
	Signal string
	// Stage is the last step of the stop sequence taken before the VM
	// ended: StageNone when it ended on its own.
	Stage Stage
	// Ran is how long the VM ran.
	Ran time.Duration
	// Err is an error of waiting for the VM that is not its exit status.
	Err error
}

// Killed reports whether SIGKILL ended the VM.
func (e Exit) Killed() bool { return e.Signal == syscall.SIGKILL.String() }

// Success reports whether the VM exited with code 0.
func (e Exit) Success() bool { return e.Code == 0 && e.Signal == "" && e.Err == nil }

func (e Exit) String() string {
	var s string
	switch {
	case e.Err != nil:
		s = "wait failed: " + e.Err.Error()
	case e.Signal != "":
		s = "killed by signal " + e.Signal
	default:
		s = fmt.Sprintf("exit code %d", e.Code)
	}
	s += " after " + e.Ran.Round(time.Millisecond).String()
	switch e.Stage {
	case StageShutdown:
		s += " (stopped by /vm.VM/Shutdown)"
	case StageTerm:
		s += " (stopped by SIGTERM)"
	case StageKill:
		s += " (stopped by SIGKILL)"
	}
	return s
}

// exitOf reads an exit from a wait's result.
func exitOf(ws syscall.WaitStatus, err error, ran time.Duration, stage Stage) Exit {
	e := Exit{Code: -1, Ran: ran, Stage: stage}
	switch {
	case err != nil:
		e.Err = err
	case ws.Signaled():
		e.Signal = ws.Signal().String()
	default:
		e.Code = ws.ExitStatus()
	}
	return e
}
