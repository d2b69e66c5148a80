package supervise

import (
	"math/rand/v2"
	"time"
)

// Clock is the time a Supervisor reads and waits on: the real one unless a
// test gives a fake that it advances. It has the shape of
// k8s.io/utils/clock's, whose Timer a one-method adapter fits.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends on C once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer, as time.Timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Rand is the random source of the backoff's jitter: Float64 returns a
// number in [0, 1). The Supervisor calls it under a lock of its own, so a
// *rand.Rand of math/rand/v2 needs none.
type Rand interface {
	Float64() float64
}

// realClock is the Clock of the time package.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// globalRand is math/rand/v2's top-level source.
type globalRand struct{}

func (globalRand) Float64() float64 { return rand.Float64() }
