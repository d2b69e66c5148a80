package supervise

import (
	"time"

	"github.com/vmre/vmre/launcher"
)

// State is where a VM is in its life under supervision.
type State int

const (
	// StateStarting: a launch is in progress.
	StateStarting State = iota + 1
	// StateRunning: the VM completed its handshake and runs.
	StateRunning
	// StateBackoff: the VM ended or failed to launch, and waits for its
	// next attempt (VM.NextAttempt).
	StateBackoff
	// StateCrashLoop: as StateBackoff, after failures in a row that took
	// the delay to its cap: the VM keeps failing.
	StateCrashLoop
	// StateStopped: an operator stopped the VM, or the Supervisor closed.
	StateStopped
	// StateExited: the VM ended and its policy does not restart it.
	StateExited
	// StateFailed: the VM cannot run: its launch failed in a way no retry
	// would change (VM.Err says why), or failed under the policy never.
	StateFailed
	// StateWaiting: a remote VM that has not called back yet.
	StateWaiting
	// StateLost: a remote VM whose lease broke (VM.Err says how); it
	// runs again when it handshakes anew.
	StateLost
	// StateUnhealthy: the VM failed its liveness probes (VM.Err matches
	// ErrUnhealthy and says why) and is being stopped, to be launched
	// again by its policy.
	StateUnhealthy
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateBackoff:
		return "backoff"
	case StateCrashLoop:
		return "crashloop"
	case StateStopped:
		return "stopped"
	case StateExited:
		return "exited"
	case StateFailed:
		return "failed"
	case StateWaiting:
		return "waiting"
	case StateLost:
		return "lost"
	case StateUnhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// VM is a snapshot of one supervised VM.
type VM struct {
	// Name is the VM's name, as given to Add or AddRemote.
	Name string
	// Remote is set for a VM on another host (AddRemote): it has no pid,
	// Peer is where its lease comes from, and CertSHA256 the fingerprint
	// of its server's certificate when that speaks TLS (CertSPKI: the
	// SHA-256 of its public key, in base64, when the VM sent it).
	Remote     bool
	Peer       string
	CertSHA256 string
	CertSPKI   string
	// State is where it is; Since is when it got there.
	State State
	Since time.Time
	// Pid and Addr are the running VM's, or those of its last run.
	Pid  int
	Addr string
	// ProtocolVersion is the version agreed in its last handshake.
	ProtocolVersion uint
	// Started is when its current (or last) run started, and Handshake the
	// time from exec to its completed handshake.
	Started   time.Time
	Handshake time.Duration
	// Launches counts its launches; Restarts those made by the policy.
	Launches, Restarts int
	// Attempt counts the failures since the VM last ran long enough to
	// reset the backoff; Delay is the wait before the next attempt, and
	// NextAttempt when it comes (in StateBackoff and StateCrashLoop).
	Attempt     int
	Delay       time.Duration
	NextAttempt time.Time
	// LastExit and Stderr are those of the latest attempt that ended: how
	// its process ended and the last lines it wrote to stderr. After a
	// launch that failed they are that launch's (LastExit is nil when its
	// process did not exit of itself: a failed exec, a handshake timeout),
	// never those of an earlier run.
	LastExit *launcher.Exit
	Stderr   []string
	// Err is the error of the latest launch when it failed (why the VM
	// cannot run, in StateFailed); nil once a launch succeeds.
	Err error
	// Version is the version of the run that Pid and Addr are of, or of
	// the latest launch: its Spec's Version, or a Rollout's.
	Version string
	// Rollout is the VM's latest rollout, in progress or ended; nil
	// before its first.
	Rollout *RolloutStatus
}

// Hooks tell of the Supervisor's events. Each field is optional and is
// called in the order of the VM's changes: on the VM's own goroutine, or,
// for a remote VM, on the goroutine that reported or commanded the change.
// It must be fast and must not block or call the Supervisor.
type Hooks struct {
	// State is called at every change of a VM's state.
	State func(VM)
	// Removed is called once Remove has forgotten the VM name, on the
	// goroutine that called Remove, after its last State.
	Removed func(name string)

	// RolloutStarted is called when a rollout begins, after the State
	// change that shows it; RolloutHealthy when it succeeded: its new
	// version proved healthy, the VM runs it and (StartFirst) the old run
	// has stopped; RolloutReverted when its new version failed and the VM
	// goes back to its old one (under Replace its launch follows; under
	// StartFirst the old run runs on); RolloutFailed when its new version
	// failed and stays the VM's version (NoAutoRevert), or when it was
	// interrupted. These three come just before the State change that
	// shows the rollout's end, so that whoever sees it ended finds what
	// they recorded; the VM may take a new rollout from then on. All are
	// called on the VM's goroutine.
	RolloutStarted, RolloutHealthy, RolloutReverted, RolloutFailed func(RolloutEvent)
}
