package launcher

import (
	"math"

	"golang.org/x/sys/unix"
)

// closeRangeCloexec is close_range(3, ~0, CLOSE_RANGE_CLOEXEC) (Linux 5.11).
func closeRangeCloexec() error { return unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) }
