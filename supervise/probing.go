package supervise

import (
	"context"
	"time"
)

// probing is the health probes of one run of a VM, one at a time: a timer
// until the next, and the probe in flight. It is owned by one goroutine,
// which selects on due and results; the liveness probes and a rollout's
// probes are each one.
type probing struct {
	timer  Timer              // until the next probe, or nil
	cancel context.CancelFunc // of the probe in flight, or nil
	result chan error         // its outcome
}

func newProbing() probing { return probing{result: make(chan error, 1)} }

// schedule makes the next probe due after d.
func (p *probing) schedule(c Clock, d time.Duration) { p.timer = c.NewTimer(d) }

// due fires when the next probe is due.
func (p *probing) due() <-chan time.Time {
	if p.timer == nil {
		return nil
	}
	return p.timer.C()
}

// results yields the outcome of the probe in flight.
func (p *probing) results() <-chan error {
	if p.cancel == nil {
		return nil
	}
	return p.result
}

// start probes vm with pr, within timeout, on a goroutine of its own.
func (p *probing) start(pr Prober, vm VM, timeout time.Duration) {
	p.timer = nil
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	p.cancel = cancel
	go func() { p.result <- pr.Probe(ctx, vm) }()
}

// took ends the probe whose outcome results yielded.
func (p *probing) took() {
	p.cancel()
	p.cancel = nil
}

// stop ends the probing: the next probe is not made, and one in flight is
// cancelled and waited for. A second stop does nothing.
func (p *probing) stop() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.cancel != nil {
		p.cancel()
		<-p.result
		p.cancel = nil
	}
}
