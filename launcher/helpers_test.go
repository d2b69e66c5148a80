package launcher_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// newLauncher returns a Launcher whose logs go to the test log, closed when
// the test ends.
func newLauncher(t *testing.T, cfg launcher.Config) *launcher.Launcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = vmretest.Logger(t)
	}
	l, err := launcher.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// newLauncherWithEvents is newLauncher with a recorder of its events.
func newLauncherWithEvents(t *testing.T, cfg launcher.Config) (*launcher.Launcher, *vmretest.Events) {
	t.Helper()
	events := vmretest.NewEvents()
	cfg.Hooks = events.Hooks()
	return newLauncher(t, cfg), events
}

// mustLaunch launches the test binary as a VM in mode, failing the test if
// the launch fails.
func mustLaunch(t *testing.T, l *launcher.Launcher, mode string) *launcher.Runtime {
	t.Helper()
	rt, err := l.Launch(t.Context(), vmretest.Command(mode))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// waitDone waits for a runtime to end, failing the test after
// vmretest.WaitTimeout.
func waitDone(t *testing.T, rt *launcher.Runtime) launcher.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), vmretest.WaitTimeout)
	defer cancel()
	exit, err := rt.Wait(ctx)
	if err != nil {
		t.Fatalf("VM %d still running after %s", rt.Status().Pid, vmretest.WaitTimeout)
	}
	return exit
}

func wantKinds(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("events %v; want %v", got, want)
	}
}

// lineLog is a writer that keeps the lines written to it: the raw output
// of a VM (Config.Stdout) or of a helper process. A VM or a helper prints
// "name=value" lines for the test.
type lineLog struct {
	mu     sync.Mutex
	lines  []string
	change chan struct{} // closed at the next write
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, strings.Split(strings.TrimSuffix(string(p), "\n"), "\n")...)
	if w.change != nil {
		close(w.change)
		w.change = nil
	}
	return len(p), nil
}

// await returns the rest of the first line that starts with prefix, failing
// the test if none comes within vmretest.WaitTimeout.
func (w *lineLog) await(t *testing.T, prefix string) string {
	t.Helper()
	return w.awaitAll(t, prefix, 1)[0]
}

// awaitAll returns the rest of the first n lines that start with prefix,
// failing the test if there are not n within vmretest.WaitTimeout.
func (w *lineLog) awaitAll(t *testing.T, prefix string, n int) []string {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		w.mu.Lock()
		var found []string
		for _, line := range w.lines {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				found = append(found, rest)
			}
		}
		if len(found) >= n {
			w.mu.Unlock()
			return found[:n]
		}
		if w.change == nil {
			w.change = make(chan struct{})
		}
		change := w.change
		w.mu.Unlock()
		select {
		case <-change:
		case <-timeout.C:
			t.Fatalf("%d lines %q... within %s; want %d; lines: %q", len(found), prefix, vmretest.WaitTimeout, n, w.String())
		}
	}
}

func (w *lineLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}
