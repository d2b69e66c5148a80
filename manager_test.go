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
	"github.com/vmre/vmre/internal/vmretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRuntime stops after delay once asked, and reports its end through
// Done the way launcher.Runtime does.
type fakeRuntime struct {
	delay time.Duration
	once  sync.Once
	done  chan struct{}

	mu    sync.Mutex
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

func (f *fakeRuntime) end() { close(f.done) }

func (f *fakeRuntime) Done() <-chan struct{} { return f.done }

// plainStopper has no Done: the manager can only ask it to stop.
type plainStopper struct{ stopped chan struct{} }

func (p plainStopper) Stop(context.Context) { close(p.stopped) }

// barrier releases every runtime of a test once all n have been asked to
// stop: a Manager that waited for one runtime's end before stopping the
// next would wait forever.
type barrier struct {
	mu      sync.Mutex
	n       int
	release chan struct{}
}

func (b *barrier) arrive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n--; b.n == 0 {
		close(b.release)
	}
}

// barrierRuntime ends once every runtime of its barrier was asked to stop.
type barrierRuntime struct {
	*fakeRuntime
	b *barrier
}

func (r barrierRuntime) Stop(context.Context) {
	r.mu.Lock()
	r.stops++
	first := r.stops == 1
	r.mu.Unlock()
	if first {
		r.b.arrive()
		go func() {
			<-r.b.release
			r.end()
		}()
	}
}

func TestManagerStopsAllInParallel(t *testing.T) {
	t.Parallel()
	const n = 8
	m := vmre.NewManager()
	b := &barrier{n: n, release: make(chan struct{})}
	var fakes []barrierRuntime
	for range n {
		f := barrierRuntime{newFake(0), b}
		fakes = append(fakes, f)
		m.TrackRuntime(f)
		m.TrackRuntime(f) // tracking twice is tracking once
	}
	plain := plainStopper{stopped: make(chan struct{})}
	m.TrackRuntime(plain)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		m.Stop(context.Background())
	}()
	select {
	case <-stopped:
	case <-time.After(vmretest.WaitTimeout):
		t.Fatal("Manager.Stop did not return: it waits for one runtime before it stops the next")
	}
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

// TestManagerForgetsEndedRuntimes: a runtime that ended leaves the
// manager, so that a node launching VM after VM holds only those that run;
// one without Done stays until Stop.
func TestManagerForgetsEndedRuntimes(t *testing.T) {
	t.Parallel()
	m := vmre.NewManager()
	f, running := newFake(0), newFake(time.Hour)
	plain := plainStopper{stopped: make(chan struct{})}
	m.TrackRuntime(f)
	m.TrackRuntime(running)
	m.TrackRuntime(plain)
	f.Stop(context.Background())
	<-f.Done()
	if n := m.(interface{ Len() int }).Len(); n != 2 {
		t.Fatalf("manager tracks %d runtimes; want 2, those that may run", n)
	}
	m.TrackRuntime(newFake(0))
	if n := m.(interface{ Len() int }).Len(); n != 3 {
		t.Fatalf("manager tracks %d runtimes after one more; want 3", n)
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
