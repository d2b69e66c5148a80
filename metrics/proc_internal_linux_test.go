package metrics

import (
	"testing"
	"time"
)

// TestStartTimeAfterYearsOfUptime: a process started after more than three
// years of uptime, where ticks counted in nanoseconds overflow.
func TestStartTimeAfterYearsOfUptime(t *testing.T) {
	boot := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, up := range []time.Duration{time.Second, 1200 * 24 * time.Hour} {
		ticks := uint64(up / time.Second * userHZ)
		if got := startTime(uint64(boot.Unix()), ticks); !got.Equal(boot.Add(up)) {
			t.Errorf("%d ticks after the boot: %v; want %v", ticks, got.UTC(), boot.Add(up))
		}
	}
}
