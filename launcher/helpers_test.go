package launcher_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/launcher"
)

// vmCommand is the test binary re-run as a VM in the given mode.
func vmCommand(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), vmModeKey+"="+mode, noRaceExitDelay)
	return cmd
}

// noRaceExitDelay stops a race-enabled VM from sleeping a second at exit.
const noRaceExitDelay = "GORACE=atexit_sleep_ms=0"

// newLauncher returns a Launcher whose logs go to the test log, closed when
// the test ends.
func newLauncher(t *testing.T, cfg launcher.Config) *launcher.Launcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	rt, err := l.Launch(t.Context(), vmCommand(mode))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
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

// processGone reports whether pid no longer runs: it does not exist, or it
// is a zombie waiting for a parent that is not us.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	attrs []slog.Attr
	*records
}

type records struct {
	mu   sync.Mutex
	list []record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

func newRecorder() *recorder { return &recorder{records: new(records)} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	h.list = append(h.list, rec)
	h.mu.Unlock()
	return nil
}

func (h *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recorder{attrs: append(slices.Clip(h.attrs), attrs...), records: h.records}
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

// find returns the first record whose message is msg.
func (h *recorder) find(msg string) (record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.list {
		if r.msg == msg {
			return r, true
		}
	}
	return record{}, false
}
