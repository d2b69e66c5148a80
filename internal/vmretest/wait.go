package vmretest

import (
	"testing"
	"time"
)

// WaitClosed fails the test unless ch closes within WaitTimeout.
func WaitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	select {
	case <-ch:
	case <-timeout.C:
		t.Fatalf("%s did not happen within %s", what, WaitTimeout)
	}
}

// Eventually reports whether cond holds within WaitTimeout, checking after
// 5 ms, then less and less often, up to every 100 ms. It is for states that
// nothing signals: that a process is gone (it is not the test's child),
// that a file descriptor, a goroutine or memory has been let go. Anything
// that an event, a hook or a channel tells is waited for on it.
func Eventually(cond func() bool) bool {
	deadline := time.Now().Add(WaitTimeout)
	for pause := 5 * time.Millisecond; !cond(); pause = min(2*pause, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}
