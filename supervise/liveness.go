package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vmre/vmre/launcher"
)

// Defaults of Liveness, for a caller that turns the probes on (as `vmre
// node` does): a VM that stops answering for about 20 s (a SIGSTOP and its
// SIGCONT, a long pause) is left alone; one that stays silent is stopped
// within about 45 s.
const (
	DefaultLivenessInterval = 10 * time.Second
	DefaultLivenessFailures = 3
)

// ErrUnhealthy is the error of a VM that failed its liveness probe
// Liveness.Failures times in a row; it wraps the last probe's error.
var ErrUnhealthy = errors.New("unhealthy")

// Liveness probes each running VM started by the Supervisor (not the
// remote ones), as Kubernetes' livenessProbe and Nomad's check_restart
// do: Interval after it runs, and Interval after each probe ends, a probe
// checks it. After Failures failures in a row the VM is StateUnhealthy
// (VM.Err matches ErrUnhealthy and says why), it is stopped as Stop stops
// it (a VM stopped by SIGSTOP gets SIGCONT with its SIGTERM, and so exits
// gracefully), and its policy launches it again as after a failure,
// OnFailure included; under Never it is StateFailed. A probe that passes
// starts the count over.
type Liveness struct {
	// Interval is the wait before each probe; zero turns the probes off.
	Interval time.Duration
	// Failures is the number of failures in a row that make a VM
	// unhealthy (default DefaultLivenessFailures).
	Failures int
	// Timeout bounds each probe (default: Interval; the health probe also
	// gives up after 5 s).
	Timeout time.Duration
	// Probe checks a VM (default: launcher.ProbeHealth of its address,
	// the probe of `vmre run --check`).
	Probe Prober
}

// Prober checks that a running VM is healthy: nil when it is. Probe must
// return once ctx ends.
type Prober interface {
	Probe(ctx context.Context, vm VM) error
}

func (l Liveness) withDefaults() Liveness {
	if l.Interval <= 0 {
		return Liveness{}
	}
	if l.Failures <= 0 {
		l.Failures = DefaultLivenessFailures
	}
	if l.Timeout <= 0 {
		l.Timeout = l.Interval
	}
	if l.Probe == nil {
		l.Probe = healthProbe{}
	}
	return l
}

// healthProbe is the Prober of launcher.ProbeHealth.
type healthProbe struct{}

func (healthProbe) Probe(ctx context.Context, vm VM) error {
	_, err := launcher.ProbeHealth(ctx, vm.Addr)
	return err
}

// liveness is the probing of one run of a VM, owned by the goroutine that
// watches the run: at most one probe is in flight, and stop ends it.
type liveness struct {
	probing
	s        *Supervisor
	name     string // the VM's
	cfg      Liveness
	failures int // in a row
}

// probe starts the liveness probes of v's run; nil when they are off.
func (s *Supervisor) probe(v *vm) *liveness {
	if s.liveness.Interval <= 0 {
		return nil
	}
	l := &liveness{probing: newProbing(), s: s, name: s.spec(v).Name, cfg: s.liveness}
	l.schedule(s.clock, l.cfg.Interval)
	return l
}

// due fires when the next probe is due.
func (l *liveness) due() <-chan time.Time {
	if l == nil {
		return nil
	}
	return l.probing.due()
}

// results yields the outcome of the probe in flight.
func (l *liveness) results() <-chan error {
	if l == nil {
		return nil
	}
	return l.probing.results()
}

// start probes the VM on a goroutine of its own.
func (l *liveness) start() {
	vm, _ := l.s.Get(l.name)
	l.probing.start(l.cfg.Probe, vm, l.cfg.Timeout)
}

// done takes the outcome of a probe, and returns ErrUnhealthy's error once
// the failures reach the threshold; until then the next probe is due
// Interval later.
func (l *liveness) done(err error) error {
	l.took()
	name := slog.String("vm", l.name)
	if err == nil {
		if l.failures > 0 {
			l.s.log.Info("liveness probe passed again", name, slog.Int("failures", l.failures))
		}
		l.failures = 0
		l.schedule(l.s.clock, l.cfg.Interval)
		return nil
	}
	l.failures++
	l.s.log.Warn("liveness probe failed", name, slog.Int("failure", l.failures), slog.Int("of", l.cfg.Failures), slog.String("error", err.Error()))
	if l.failures >= l.cfg.Failures {
		return fmt.Errorf("%w: %d liveness probes failed in a row, %s apart; the last: %w", ErrUnhealthy, l.failures, l.cfg.Interval, err)
	}
	l.schedule(l.s.clock, l.cfg.Interval)
	return nil
}

// stop ends the probing: the pending probe is cancelled, and a probe in
// flight is cancelled and waited for. A second stop does nothing.
func (l *liveness) stop() {
	if l != nil {
		l.probing.stop()
	}
}
