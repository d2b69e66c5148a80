package launcher_test

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// Config.Start starts each VM, always on the launcher's one thread that
// starts VMs, and a VM it started runs as any other: its handshake
// completes and it stops gracefully.
func TestConfigStart(t *testing.T) {
	var mu sync.Mutex
	var tids []int
	start := func(cmd *exec.Cmd) error {
		mu.Lock()
		tids = append(tids, unix.Gettid())
		mu.Unlock()
		return cmd.Start()
	}
	l := newLauncher(t, launcher.Config{Start: start})
	for range 3 {
		rt := mustLaunch(t, l, "ok")
		rt.Stop(context.Background())
		if exit := waitDone(t, rt); !exit.Success() {
			t.Errorf("the VM started by Config.Start ended %s", exit)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tids) != 3 {
		t.Fatalf("Config.Start called %d times for 3 launches", len(tids))
	}
	for _, tid := range tids[1:] {
		if tid != tids[0] {
			t.Errorf("Config.Start ran on threads %v, want one thread for every launch", tids)
		}
	}
}

// A Config.Start that fails fails the launch, in the exec phase, with its
// error; one that returns no error but starts nothing is refused as a
// configuration error, and neither leaves a descriptor behind.
func TestConfigStartFails(t *testing.T) {
	refused := errors.New("refused by the test's Start")
	for _, tc := range []struct {
		name  string
		start func(*exec.Cmd) error
		phase launcher.Phase
		is    error
	}{
		{"error", func(*exec.Cmd) error { return refused }, launcher.PhaseExec, refused},
		{"nothing started", func(*exec.Cmd) error { return nil }, launcher.PhaseExec, vmre.ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLauncher(t, launcher.Config{Start: tc.start})
			before, ok := vmretest.OpenFDs()
			_, err := l.Launch(context.Background(), vmretest.Command("ok"))
			var lerr *launcher.LaunchError
			if !errors.As(err, &lerr) || lerr.Phase != tc.phase || !errors.Is(err, tc.is) {
				t.Fatalf("launch: %v; want a LaunchError in phase %s that is %v", err, tc.phase, tc.is)
			}
			if ok && !vmretest.Eventually(func() bool { n, _ := vmretest.OpenFDs(); return n <= before }) {
				after, _ := vmretest.OpenFDs()
				t.Errorf("%d descriptors open after the failed launch, %d before", after, before)
			}
		})
	}
}
