// Package ratelog limits the records of refused calls: a flood of bad
// calls must not flood the host's log. The engine, the legacy listener and
// the admin service log their refusals through it.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Burst is how many refused calls a Limiter logs per second: the rest
// are counted, and the count goes with the next record logged, as
// dropped_before.
const Burst = 10

// Limiter limits the records of refused calls. The zero value is ready.
type Limiter struct {
	mu      sync.Mutex
	window  time.Time // start of the current second
	logged  int       // records logged in it
	dropped int       // records dropped since the last one logged
}

// allow reports whether a refusal may be logged at now, and how many were
// dropped before it.
func (r *Limiter) allow(now time.Time) (ok bool, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.window) >= time.Second {
		r.window, r.logged = now, 0
	}
	if r.logged >= Burst {
		r.dropped++
		return false, 0
	}
	r.logged++
	dropped, r.dropped = r.dropped, 0
	return true, dropped
}

// Log writes a refusal's record at warn, unless too many came this
// second.
func (r *Limiter) Log(ctx context.Context, l *slog.Logger, msg string, attrs ...slog.Attr) {
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
