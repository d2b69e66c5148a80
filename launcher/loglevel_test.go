package launcher_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// TestVMLevelsAsUsersSeeThem launches a VM that logs trace lines (hclog's
// name, pino's number) and a pino warning, into slog's TextHandler as
// `vmre run --log-level` sets it: at debug, trace lines show, at DEBUG with
// the VM's own level kept; at info, they do not.
func TestVMLevelsAsUsersSeeThem(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level slog.Level
		want  []string // a line of the host's log with each
		not   []string // no line with these
	}{
		{slog.LevelDebug, []string{
			`level=DEBUG msg="hclog trace" vm=logvm`,
			`level=DEBUG msg="pino trace" vm=logvm`,
			`vm_level=trace pid=7 hostname=h`,
			`level=WARN msg="pino warn" vm=logvm`,
			`stream=stdout ratio=1.5`,
		}, nil},
		{slog.LevelInfo, []string{`level=WARN msg="pino warn"`}, []string{"trace"}},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			var out vmretest.SyncBuffer
			log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level}))
			l := newLauncher(t, launcher.Config{Logger: log, Name: "logvm"})
			rt := mustLaunch(t, l, "logs")
			rt.Stop(context.Background())
			waitDone(t, rt)
			text := out.String()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in the host's log:\n%s", w, text)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(text, n) {
					t.Errorf("%q in the host's log at %v:\n%s", n, tc.level, text)
				}
			}
		})
	}
}
