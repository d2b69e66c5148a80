package launcher

import (
	"time"

	"github.com/vmre/vmre/server"
)

// Hooks are the events of a VM's life, in the style of
// net/http/httptrace.ClientTrace: every field is optional, each is called
// synchronously on the goroutine named in its comment, and each must be fast
// and must not block or call the Runtime's Stop. A nil field costs nothing.
//
// The events of one launch come in this order (docs/ARCHITECTURE.md draws
// it): Started, EngineCall (once per call, refused ones included),
// Handshake, Ready; then, when it is stopped, StopStage for each stage;
// Exited once the VM is reaped. A failed launch ends with LaunchFailed
// instead of Handshake and Ready, after Exited when the VM had started.
// OutputDropped may come at any time between Started and Exited.
//
// Hooks set in Config see every launch of the Launcher; those given to one
// Launch with WithHooks see that launch only, and are called after them.
type Hooks struct {
	// Started: the VM's process has started. On Launch's goroutine.
	Started func(StartedInfo)
	// EngineCall: the VM called the engine with this launch's credentials,
	// and the engine accepted or refused the call. On the engine's goroutine
	// serving the call, before the answer is written.
	EngineCall func(EngineCallInfo)
	// Handshake: the VM completed its handshake. On Launch's goroutine.
	Handshake func(HandshakeInfo)
	// Ready: Launch is about to return the Runtime. On Launch's
	// goroutine.
	Ready func(ReadyInfo)
	// LaunchFailed: Launch is about to return err; the VM, if it started,
	// is reaped. On Launch's goroutine.
	LaunchFailed func(err *LaunchError)
	// StopStage: the stop sequence entered a stage: the legacy Shutdown
	// call, SIGTERM or SIGKILL. On the goroutine that called Stop, or the
	// timer's or context's goroutine that moved the stop on.
	StopStage func(StopStageInfo)
	// Exited: the VM has been reaped and its output drained. On the
	// Runtime's own goroutine, before Done is closed.
	Exited func(ExitInfo)
	// OutputDropped: output of the VM did not become whole records. On the
	// goroutine that reads the stream.
	OutputDropped func(OutputDropInfo)
}

// StartedInfo is the event of a VM's start.
type StartedInfo struct {
	VM   string // the VM's name
	Pid  int
	Path string        // the command's path
	Exec time.Duration // from the start of Launch to the process running
}

// EngineCallInfo is a call the VM made to the engine for its launch.
type EngineCallInfo struct {
	VM  string
	Pid int
	server.Call
}

// HandshakeInfo is the event of a completed handshake.
type HandshakeInfo struct {
	VM              string
	Pid             int
	Addr            string        // the VM's server
	ProtocolVersion uint          // agreed in the handshake
	Elapsed         time.Duration // from the start of Launch
}

// ReadyInfo is the event of a launch that succeeded.
type ReadyInfo struct {
	VM              string
	Pid             int
	Addr            string
	ProtocolVersion uint
	Elapsed         time.Duration // from the start of Launch
}

// StopStageInfo is a stage of a VM's stop sequence.
type StopStageInfo struct {
	VM     string
	Pid    int
	Stage  Stage
	Reason StopReason
	// Err is the error of the stage's action (a failed signal), or, for
	// the SIGTERM that follows a legacy Shutdown call, that call's error.
	Err error
}

// ExitInfo is the event of a VM's end.
type ExitInfo struct {
	VM   string
	Pid  int
	Exit Exit
}

// OutputDropInfo reports output of the VM that did not become whole records.
type OutputDropInfo struct {
	VM     string
	Pid    int
	Stream string // "stdout" or "stderr"
	// Truncated counts lines cut at MaxLineBytes: their rest was dropped.
	Truncated int
	// Unread is set when reading stopped before the end of the pipe:
	// after the VM's exit, a process outside its group held the pipe open
	// past the drain time. What that process writes from then on is not
	// read; the pipe was found empty when reading stopped, unless it was
	// still being filled after the longest drain (5 s), when output in it
	// was lost too.
	Unread bool
}

// hookList calls the hooks of a launch in order: the Launcher's log, the
// Config's, the launch's own.
type hookList []*Hooks

func (hs hookList) started(i StartedInfo) {
	for _, h := range hs {
		if h.Started != nil {
			h.Started(i)
		}
	}
}

func (hs hookList) engineCall(i EngineCallInfo) {
	for _, h := range hs {
		if h.EngineCall != nil {
			h.EngineCall(i)
		}
	}
}

func (hs hookList) handshake(i HandshakeInfo) {
	for _, h := range hs {
		if h.Handshake != nil {
			h.Handshake(i)
		}
	}
}

func (hs hookList) ready(i ReadyInfo) {
	for _, h := range hs {
		if h.Ready != nil {
			h.Ready(i)
		}
	}
}

func (hs hookList) launchFailed(err *LaunchError) {
	for _, h := range hs {
		if h.LaunchFailed != nil {
			h.LaunchFailed(err)
		}
	}
}

func (hs hookList) stopStage(i StopStageInfo) {
	for _, h := range hs {
		if h.StopStage != nil {
			h.StopStage(i)
		}
	}
}

func (hs hookList) exited(i ExitInfo) {
	for _, h := range hs {
		if h.Exited != nil {
			h.Exited(i)
		}
	}
}

func (hs hookList) outputDropped(i OutputDropInfo) {
	for _, h := range hs {
		if h.OutputDropped != nil {
			h.OutputDropped(i)
		}
	}
}

// JoinHooks returns hooks that call each of hooks in turn, skipping nil
// ones; a field is nil when no hook sets it, so it still costs nothing.
func JoinHooks(hooks ...*Hooks) *Hooks {
	var hs hookList
	for _, h := range hooks {
		if h != nil {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return hs[0]
	}
	j := &Hooks{}
	set := func(f func(*Hooks) bool) bool {
		for _, h := range hs {
			if f(h) {
				return true
			}
		}
		return false
	}
	if set(func(h *Hooks) bool { return h.Started != nil }) {
		j.Started = hs.started
	}
	if set(func(h *Hooks) bool { return h.EngineCall != nil }) {
		j.EngineCall = hs.engineCall
	}
	if set(func(h *Hooks) bool { return h.Handshake != nil }) {
		j.Handshake = hs.handshake
	}
	if set(func(h *Hooks) bool { return h.Ready != nil }) {
		j.Ready = hs.ready
	}
	if set(func(h *Hooks) bool { return h.LaunchFailed != nil }) {
		j.LaunchFailed = hs.launchFailed
	}
	if set(func(h *Hooks) bool { return h.StopStage != nil }) {
		j.StopStage = hs.stopStage
	}
	if set(func(h *Hooks) bool { return h.Exited != nil }) {
		j.Exited = hs.exited
	}
	if set(func(h *Hooks) bool { return h.OutputDropped != nil }) {
		j.OutputDropped = hs.outputDropped
	}
	return j
}
