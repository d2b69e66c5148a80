package vmre_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vmre/vmre"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRuntime stops after delay once asked, and reports its end through
// Done and AfterExit the way launcher.Runtime does.
type fakeRuntime struct {
	delay time.Duration
	once  sync.Once
	done  chan struct{}

	mu    sync.Mutex
	after []func()
	stops int
}

func newFake(delay time.Duration) *fakeRuntime {
	return &fakeRuntime{delay: delay, done: make(chan struct{})}
}

func (f *fakeRuntime) Stop(context.Context) {
	f.mu.Lock()
	f.stops++
	f.mu.Unlock()
	f.once.Do(func() { time.AfterFunc(f.delay, f.end) })
}

func (f *fakeRuntime) end() {
	f.mu.Lock()
	after := f.after
	f.after = nil
	f.mu.Unlock()
	for _, fn := range after {
		fn()
	}
	close(f.done)
}

func (f *fakeRuntime) Done() <-chan struct{} { return f.done }

func (f *fakeRuntime) AfterExit(fn func()) func() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = append(f.after, fn)
	return func() bool { return false }
}

// plainStopper has no Done: the manager can only ask it to stop.
type plainStopper struct{ stopped chan struct{} }

func (p plainStopper) Stop(context.Context) { close(p.stopped) }

func TestManagerStopsAllInParallel(t *testing.T) {
	t.Parallel()
	const n, delay = 8, 200 * time.Millisecond
	m := vmre.NewManager()
	var fakes []*fakeRuntime
	for range n {
		f := newFake(delay)
		fakes = append(fakes, f)
		m.TrackRuntime(f)
		m.TrackRuntime(f) // tracking twice is tracking once
	}
	plain := plainStopper{stopped: make(chan struct{})}
	m.TrackRuntime(plain)

	start := time.Now()
	m.Stop(context.Background())
	elapsed := time.Since(start)
	for i, f := range fakes {
		select {
		case <-f.Done():
		default:
			t.Errorf("runtime %d not done when Stop returned", i)
		}
		if f.stops != 1 {
			t.Errorf("runtime %d stopped %d times", i, f.stops)
		}
	}
	select {
	case <-plain.stopped:
	default:
		t.Error("a Stopper without Done was not stopped")
	}
	if elapsed >= delay*n/2 {
		t.Errorf("Stop took %s for %d runtimes of %s each: not in parallel", elapsed, n, delay)
	}
}

func TestManagerStopHonoursContext(t *testing.T) {
	t.Parallel()
	m := vmre.NewManager()
	f := newFake(time.Hour)
	m.TrackRuntime(f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	m.Stop(ctx) // returns when ctx ends, although f never does
	if ctx.Err() == nil {
		t.Fatal("Stop returned before its context ended, with a runtime still running")
	}
}

func TestManagerForgetsEndedRuntimes(t *testing.T) {
	t.Parallel()
	m := vmre.NewManager()
	f := newFake(0)
	m.TrackRuntime(f)
	f.Stop(context.Background())
	<-f.Done() // AfterExit callbacks ran before Done closed
	if n := m.(interface{ Len() int }).Len(); n != 0 {
		t.Fatalf("manager still tracks %d runtimes", n)
	}
}

func TestVersionMismatchError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  *vmre.VersionMismatchError
		text string
		hint string
	}{
		{&vmre.VersionMismatchError{HostName: "vmre", HostVersion: 2, VMVersion: 1}, "protocol version mismatch vmre: 2 vm: 1", "the VM is older"},
		{&vmre.VersionMismatchError{HostName: "odysseygo", HostVersion: 35, VMVersion: 36}, "protocol version mismatch odysseygo: 35 vm: 36", "upgrade the host"},
	} {
		if c.err.Error() != c.text {
			t.Errorf("Error() = %q, want %q", c.err.Error(), c.text)
		}
		if !errors.Is(c.err, vmre.ErrProtocolVersionMismatch) {
			t.Errorf("%v is not ErrProtocolVersionMismatch", c.err)
		}
		if h := c.err.Hint(); !strings.Contains(h, c.hint) {
			t.Errorf("Hint() = %q, want it to say %q", h, c.hint)
		}
	}
}
