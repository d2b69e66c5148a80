package supervise

import (
	"context"
	"time"
)

// graceKey is the context key of WithGrace.
type graceKey struct{}

// WithGrace returns a context for Stop or Restart that gives the VM at most
// grace between SIGTERM and SIGKILL (0: SIGKILL at once), as `docker stop
// --time` does. The launcher's graceful timeout still bounds it: a longer
// grace changes nothing. Stop and Restart still wait for the VM's reap.
func WithGrace(ctx context.Context, grace time.Duration) context.Context {
	return context.WithValue(ctx, graceKey{}, max(grace, 0))
}

// cutAfterGrace calls cut once the grace that ctx carries (WithGrace) has
// passed, and returns the function that stops it; without one it does
// nothing.
func cutAfterGrace(ctx context.Context, cut func()) (stop func() bool) {
	grace, ok := ctx.Value(graceKey{}).(time.Duration)
	switch {
	case !ok:
		return func() bool { return false }
	case grace == 0:
		cut()
		return func() bool { return false }
	}
	return time.AfterFunc(grace, cut).Stop
}
