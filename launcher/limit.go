package launcher

import (
	"context"
	"fmt"
	"runtime"
)

// launchesPerCPU sets the default of Config.MaxConcurrentLaunches: this many
// launches per CPU between exec and the end of their handshakes.
const launchesPerCPU = 4

// maxConcurrentLaunches is the limit that Config.MaxConcurrentLaunches asks
// for: 0 for none.
func maxConcurrentLaunches(n int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return launchesPerCPU * runtime.NumCPU()
	}
	return n
}

// launchSlots bounds how many launches run at once, from exec to the end of
// their handshakes. A VM starting up takes the CPUs (its runtime, its
// package init, its handshake, the engine's side): more at once than the
// machine runs only make each take longer, until their handshakes time out.
// A nil *launchSlots has no limit.
type launchSlots struct {
	slots chan struct{}
}

// newLaunchSlots returns slots for n launches at once; nil when n is 0.
func newLaunchSlots(n int) *launchSlots {
	if n == 0 {
		return nil
	}
	return &launchSlots{slots: make(chan struct{}, n)}
}

// acquire waits for a slot until ctx ends. Its error says what the launch
// waited for.
func (s *launchSlots) acquire(ctx context.Context) error {
	if s == nil {
		return nil
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the launch's context ended while it waited for one of the %d launches at once (Config.MaxConcurrentLaunches) to end: %w",
			cap(s.slots), context.Cause(ctx))
	}
}

// release gives a slot back.
func (s *launchSlots) release() {
	if s != nil {
		<-s.slots
	}
}
