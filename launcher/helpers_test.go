package launcher_test

import (
	"context"
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

// waitDone waits for a runtime to end, failing the test after d.
func waitDone(t *testing.T, rt *launcher.Runtime, d time.Duration) launcher.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	exit, err := rt.Wait(ctx)
	if err != nil {
		t.Fatalf("VM %d still running after %s", rt.Status().Pid, d)
	}
	return exit
}
