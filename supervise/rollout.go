package supervise

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// Strategy is how a rollout puts a new version of a VM in place of the
// old one.
type Strategy int

const (
	// Replace stops the old run (its graceful timeout), then launches the
	// new version: the VM is down for a stop and a start. The default.
	Replace Strategy = iota + 1
	// StartFirst launches the new version beside the old run, which keeps
	// serving; once the new one is healthy the VM switches to it (its
	// state shows the new run) and the old is stopped. For VMs that can
	// run twice at once.
	StartFirst
)

func (s Strategy) String() string {
	switch s {
	case Replace:
		return "replace"
	case StartFirst:
		return "start-first"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// ParseStrategy reads a strategy's name: replace or start-first.
func ParseStrategy(s string) (Strategy, error) {
	for _, st := range []Strategy{Replace, StartFirst} {
		if s == st.String() {
			return st, nil
		}
	}
	return 0, fmt.Errorf("%q is not a rollout strategy: use replace or start-first", s)
}

// Defaults of a Rollout, Nomad's update block's.
const (
	DefaultMinHealthy      = 10 * time.Second
	DefaultHealthyDeadline = 60 * time.Second
	// DefaultProbeInterval is the wait between the health probes of a
	// new version (RolloutConfig.Interval).
	DefaultProbeInterval = time.Second
)

// Errors of rollouts.
var (
	// ErrRolloutInProgress: the VM's rollout has not ended yet.
	ErrRolloutInProgress = errors.New("a rollout is in progress")
	// ErrNotHealthy: the new version was not healthy by its deadline. A
	// *RolloutError wraps it, and the last probe's error.
	ErrNotHealthy = errors.New("not healthy")
)

// Rollout is a new version of a VM to put in place of the one that runs,
// health-gated: the new version is healthy once it has completed its
// handshake, answered its health probe (RolloutConfig.Probe) and stayed
// up, answering, for MinHealthy. It fails when that has not happened
// within HealthyDeadline of its launch, or when it exits first; the VM
// then goes back to its old version (its Spec's Command), unless
// NoAutoRevert. Zero values mean the defaults.
type Rollout struct {
	// Version labels the new version (a node gives its digest) in
	// VM.Version, VM.Rollout and the hooks.
	Version string
	// Command makes the new version's commands (required). Once the
	// rollout has succeeded it is the VM's Spec's Command.
	Command func() (*exec.Cmd, error)
	// Strategy is Replace (the default) or StartFirst.
	Strategy Strategy
	// MinHealthy is how long the new version must stay up and answer its
	// probes (DefaultMinHealthy), and HealthyDeadline the time it has to
	// get there from its launch (DefaultHealthyDeadline).
	MinHealthy, HealthyDeadline time.Duration
	// NoAutoRevert keeps a failed version as the VM's version: it runs on
	// if it runs (unhealthy, for debugging), and its policy launches it
	// again if it ended (its crash loop); the old run is stopped.
	NoAutoRevert bool
}

func (r Rollout) withDefaults() Rollout {
	if r.Strategy == 0 {
		r.Strategy = Replace
	}
	if r.MinHealthy <= 0 {
		r.MinHealthy = DefaultMinHealthy
	}
	if r.HealthyDeadline <= 0 {
		r.HealthyDeadline = DefaultHealthyDeadline
	}
	return r
}

func (r Rollout) check() error {
	switch {
	case r.Command == nil:
		return fmt.Errorf("%w: a Rollout needs a Command", vmre.ErrInvalidConfig)
	case r.Strategy != 0 && r.Strategy != Replace && r.Strategy != StartFirst:
		return fmt.Errorf("%w: %s is not a rollout strategy", vmre.ErrInvalidConfig, r.Strategy)
	case r.MinHealthy < 0 || r.HealthyDeadline < 0:
		return fmt.Errorf("%w: a Rollout's MinHealthy and HealthyDeadline are not negative", vmre.ErrInvalidConfig)
	}
	return nil
}

// RolloutConfig configures how a Supervisor finds a new version healthy.
type RolloutConfig struct {
	// Probe checks the new version's health (default: launcher.ProbeHealth
	// of its address, the probe of `vmre run --check`): gRPC's health
	// service, or an HTTP answer from a VM without one.
	Probe Prober
	// Interval is the wait between the probes of a new version
	// (DefaultProbeInterval), from its handshake until it is healthy.
	Interval time.Duration
}

func (c RolloutConfig) withDefaults() RolloutConfig {
	if c.Probe == nil {
		c.Probe = healthProbe{}
	}
	if c.Interval <= 0 {
		c.Interval = DefaultProbeInterval
	}
	return c
}

// RolloutPhase is where a rollout is.
type RolloutPhase int

const (
	// RolloutInProgress: the new version is being launched and checked.
	RolloutInProgress RolloutPhase = iota + 1
	// RolloutSucceeded: the new version was healthy; the VM runs it.
	RolloutSucceeded
	// RolloutReverted: the new version failed (Err says why) and the VM
	// went back to its old version.
	RolloutReverted
	// RolloutFailed: the new version failed and, under NoAutoRevert, stays
	// the VM's version.
	RolloutFailed
	// RolloutInterrupted: an operator's Stop or Restart, Remove or Close
	// ended the rollout before it did; the VM's version is the old one.
	RolloutInterrupted
)

func (p RolloutPhase) String() string {
	switch p {
	case RolloutInProgress:
		return "rolling out"
	case RolloutSucceeded:
		return "succeeded"
	case RolloutReverted:
		return "rolled back"
	case RolloutFailed:
		return "failed"
	case RolloutInterrupted:
		return "interrupted"
	}
	return fmt.Sprintf("RolloutPhase(%d)", int(p))
}

// RolloutStatus is a VM's latest rollout (VM.Rollout).
type RolloutStatus struct {
	// ID is the Supervisor's number of the rollout, as Rollout returned it.
	ID    uint64
	Phase RolloutPhase
	// Strategy, MinHealthy and HealthyDeadline are the rollout's, defaults
	// applied.
	Strategy                    Strategy
	MinHealthy, HealthyDeadline time.Duration
	// From is the old version, To the new one (Spec.Version and
	// Rollout.Version).
	From, To string
	// Started is when it began; Deadline when the new version must be
	// healthy by, once its launch began; HealthySince when its probes
	// began to pass (zero until they do); Ended when it ended.
	Started, Deadline, HealthySince, Ended time.Time
	// Err is why it failed (a *RolloutError) or was interrupted.
	Err error
}

// RolloutEvent is what the rollout hooks tell.
type RolloutEvent struct {
	// VM is the VM's name.
	VM string
	// Rollout is the rollout, as VM.Rollout shows it then.
	Rollout RolloutStatus
}

// RolloutError is why a rollout's new version failed: its launch failed
// (Err is the *launcher.LaunchError), it exited before it was healthy
// (Exit says how), or it was not healthy by its deadline (Err matches
// ErrNotHealthy and wraps the last probe's error, if any).
type RolloutError struct {
	// Version is the new version's.
	Version string
	// Exit is how the new version's process ended, when it did of itself.
	Exit *launcher.Exit
	// Stderr are its last lines, when it exited.
	Stderr []string
	// Err is the cause.
	Err error
}

func (e *RolloutError) Error() string {
	var b strings.Builder
	var lerr *launcher.LaunchError
	stderr := e.Stderr
	if errors.As(e.Err, &lerr) && len(stderr) == 0 {
		stderr = lerr.Stderr
	}
	switch {
	case errors.As(e.Err, &lerr) && lerr.Exit != nil:
		fmt.Fprintf(&b, "%s, before its handshake", lerr.Exit)
	case errors.As(e.Err, &lerr):
		b.WriteString(e.Err.Error())
	case e.Exit != nil:
		fmt.Fprintf(&b, "%s, %s", e.Exit, e.Err)
	default:
		b.WriteString(e.Err.Error())
	}
	if n := len(stderr); n > 0 {
		fmt.Fprintf(&b, "; its last stderr line: %s", graphic(stderr[n-1]))
	}
	return b.String()
}

// graphic is s with its control characters escaped: a VM's bytes, shown.
func graphic(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsGraphic(r) {
			b.WriteRune(r)
		} else {
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		}
	}
	return b.String()
}

func (e *RolloutError) Unwrap() error { return e.Err }

// rolloutReq is a rollout given to Rollout, waiting for the VM's
// goroutine.
type rolloutReq struct {
	id uint64
	r  Rollout // defaults applied
}

// Rollout starts a rollout of a new version of the VM name, and returns
// its ID once the VM's goroutine has it to do (after the launch in
// progress, if any): the rollout runs on, and the hooks and VM.Rollout
// tell how it goes and how it ends. The VM need not run: a VM that waits
// in a backoff, exited or failed is launched at its new version, and
// goes back to its old one if that fails. A remote VM has no versions of
// the Supervisor's; a VM whose rollout has not ended yet refuses another
// one (ErrRolloutInProgress). An operator's Stop, or Restart, interrupts
// it.
func (s *Supervisor) Rollout(name string, r Rollout) (uint64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return 0, ErrClosed
	}
	v, ok := s.vms[name]
	switch {
	case !ok || v.removing:
		return 0, fmt.Errorf("%w %q", ErrUnknownVM, name)
	case v.remote != nil:
		return 0, fmt.Errorf("%w: %s is a remote VM: its orchestrator starts its versions", vmre.ErrInvalidConfig, name)
	case v.rolling && v.pendingRollout != nil:
		return 0, fmt.Errorf("%w: a rollout of %s waits to begin", ErrRolloutInProgress, name)
	case v.rolling:
		return 0, fmt.Errorf("%w: %s rolls out %s", ErrRolloutInProgress, name, v.state.Rollout.To)
	}
	s.rollouts++
	v.pendingRollout = &rolloutReq{id: s.rollouts, r: r.withDefaults()}
	v.rolling = true
	select {
	case v.kick <- struct{}{}:
	default:
	}
	return s.rollouts, nil
}

// takeRollout takes the VM's pending rollout, if any.
func (s *Supervisor) takeRollout(v *vm) *rolloutReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := v.pendingRollout
	v.pendingRollout = nil
	return req
}

// dropRollout ends the VM's rollout that has not begun, if any, as
// interrupted: an operator's Stop, or the VM's end, came first.
func (s *Supervisor) dropRollout(v *vm, why string) {
	req := s.takeRollout(v)
	if req == nil {
		return
	}
	now := s.clock.Now()
	st := RolloutStatus{ID: req.id, Phase: RolloutInterrupted, Strategy: req.r.Strategy, MinHealthy: req.r.MinHealthy,
		HealthyDeadline: req.r.HealthyDeadline, From: s.spec(v).Version, To: req.r.Version, Started: now, Ended: now,
		Err: errors.New(why + " before it began")}
	s.endRollout(v)
	s.tellRollout(v, st)
	s.update(v, "rollout interrupted before it began", func(vs *VM) { vs.Rollout = &st })
}

// endRollout lets the VM take a new rollout.
func (s *Supervisor) endRollout(v *vm) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.pendingRollout == nil {
		v.rolling = false
	}
}

// tellRollout tells the hook of the rollout's phase.
func (s *Supervisor) tellRollout(v *vm, st RolloutStatus) {
	h := s.hooks
	if h == nil {
		return
	}
	var f func(RolloutEvent)
	switch st.Phase {
	case RolloutInProgress:
		f = h.RolloutStarted
	case RolloutSucceeded:
		f = h.RolloutHealthy
	case RolloutReverted:
		f = h.RolloutReverted
	case RolloutFailed, RolloutInterrupted:
		f = h.RolloutFailed
	}
	if f != nil {
		f(RolloutEvent{VM: s.spec(v).Name, Rollout: st})
	}
}
