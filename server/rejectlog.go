package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rejectLogBurst is how many refused calls an engine logs per second. A
// flood of bad calls must not flood the host's log: the rest are counted,
// and the count goes with the next record logged.
const rejectLogBurst = 10

// rejectLog limits the records of refused calls.
type rejectLog struct {
	mu      sync.Mutex
	window  time.Time // start of the current second
	logged  int       // records logged in it
	dropped int       // records dropped since the last one logged
}

// allow reports whether a refusal may be logged at now, and how many were
// dropped before it.
func (r *rejectLog) allow(now time.Time) (ok bool, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.window) >= time.Second {
		r.window, r.logged = now, 0
	}
	if r.logged >= rejectLogBurst {
		r.dropped++
		return false, 0
	}
	r.logged++
	dropped, r.dropped = r.dropped, 0
	return true, dropped
}

// log writes a refusal's record, unless too many came this second.
func (r *rejectLog) log(ctx context.Context, l *slog.Logger, msg string, attrs ...slog.Attr) {
	if !l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	ok, dropped := r.allow(time.Now())
	if !ok {
		return
	}
	if dropped > 0 {
		attrs = append(attrs, slog.Int("dropped_before", dropped))
	}
	l.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}
