package supervise

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"github.com/vmre/vmre/launcher"
)

// Policy says when a VM that ended is launched again.
type Policy int

const (
	// Never: a VM that ends stays ended (the default, as in `vmre run`).
	Never Policy = iota
	// OnFailure: a VM is launched again when its launch failed or it
	// ended with a non-zero code or a signal it was not stopped by.
	OnFailure
	// Always: a VM is launched again whenever it ends, unless an operator
	// stopped it.
	Always
)

func (p Policy) String() string {
	switch p {
	case Never:
		return "never"
	case OnFailure:
		return "on-failure"
	case Always:
		return "always"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy reads a policy's name: never, on-failure or always.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Never, OnFailure, Always} {
		if s == p.String() {
			return p, nil
		}
	}
	return Never, fmt.Errorf("%q is not a restart policy: use never, on-failure or always", s)
}

// restarts reports whether the policy launches a VM again after a run that
// ended with exit.
func (p Policy) restarts(exit launcher.Exit) bool {
	switch p {
	case Always:
		return true
	case OnFailure:
		return !exit.Success()
	}
	return false
}

// Defaults of Backoff, Kubernetes' newer crash-loop defaults.
const (
	DefaultInitialDelay = time.Second
	DefaultMaxDelay     = 60 * time.Second
	DefaultResetAfter   = 10 * time.Minute
)

// Backoff is the wait before each new attempt: Initial, doubled after each
// failure up to Max, with up to a tenth of jitter either way but never
// beyond Max: Max is the longest wait. A VM that ran for ResetAfter starts
// again from Initial. Zero values mean the defaults.
type Backoff struct {
	Initial, Max, ResetAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultInitialDelay
	}
	if b.Max <= 0 {
		b.Max = DefaultMaxDelay
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultResetAfter
	}
	return b
}

// delay is the wait before attempt n (1 for the first retry), and whether
// its base reached the cap; r, in [0, 1), places it in its jitter's range:
// [90%, 110%] of the base, cut at Max. The jitter keeps VMs that crashed
// together from coming back together, at the cap too, where it spreads
// them over [90%, 100%] of Max.
func (b Backoff) delay(n int, r float64) (time.Duration, bool) {
	base := b.Initial
	for i := 1; i < n && base < b.Max; i++ {
		base *= 2
	}
	capped := base >= b.Max
	base = min(base, b.Max)
	lo, hi := base-base/10, min(base+base/10, b.Max)
	return lo + time.Duration(r*float64(hi-lo)), capped
}

// permanent reports whether a launch failed in a way that no retry would
// change: a protocol version mismatch, a bad configuration, a missing or
// non-executable file, an exec format error, or a command that could not
// be made (a refused pin, for example).
func permanent(err error) bool {
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) {
		return true // the command could not be made: the file is wrong
	}
	switch lerr.Phase {
	case launcher.PhaseConfig, launcher.PhaseVersion:
		return true
	case launcher.PhaseExec:
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC)
	}
	return false
}
