package main

import (
	"flag"
	"time"

	"github.com/vmre/vmre/supervise"
)

// superviseFlags are the flags of run and node that say when a VM is
// launched again.
type superviseFlags struct {
	policy                 supervise.Policy
	initial, max, resetAft time.Duration
}

// policyFlag is the value of --restart.
type policyFlag struct{ p *supervise.Policy }

func (f policyFlag) String() string {
	if f.p == nil {
		return supervise.Never.String()
	}
	return f.p.String()
}

func (f policyFlag) Set(s string) error {
	p, err := supervise.ParsePolicy(s)
	if err == nil {
		*f.p = p
	}
	return err
}

func (f *superviseFlags) register(fs *flag.FlagSet) {
	fs.Var(policyFlag{&f.policy}, "restart",
		"when a VM that ended is launched again: `policy` never, on-failure (a failed launch, a non-zero exit, a signal) or always; "+
			"never for a protocol version mismatch, a missing or non-executable file, an exec format error or a refused pin")
	fs.DurationVar(&f.initial, "backoff-initial", supervise.DefaultInitialDelay, "the first delay before a restart; it doubles at each failure in a row")
	fs.DurationVar(&f.max, "backoff-max", supervise.DefaultMaxDelay, "the longest delay before a restart (the VM is then in crashloop)")
	fs.DurationVar(&f.resetAft, "backoff-reset", supervise.DefaultResetAfter, "a VM that ran this long starts again from --backoff-initial")
}

func (f *superviseFlags) validate(fs *flag.FlagSet, e env) int {
	return checkTimeouts(fs, e, map[string]time.Duration{
		"backoff-initial": f.initial,
		"backoff-max":     f.max,
		"backoff-reset":   f.resetAft,
	})
}

func (f *superviseFlags) backoff() supervise.Backoff {
	return supervise.Backoff{Initial: f.initial, Max: f.max, ResetAfter: f.resetAft}
}
