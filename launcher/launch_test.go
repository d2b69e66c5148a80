package launcher_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

func ping(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://" + addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if string(body) != "pong" {
		t.Fatalf("GET /ping = %q, want pong", body)
	}
}

func TestLaunch(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	first := mustLaunch(t, l, "ok")
	second := mustLaunch(t, l, "ok")
	a, b := first.Status(), second.Status()
	if a.Pid == 0 || b.Pid == 0 || a.Pid == b.Pid || a.Addr == "" || a.Addr == b.Addr {
		t.Fatalf("statuses = %+v and %+v, want two distinct VMs", a, b)
	}
	if first.ProtocolVersion() != vmre.ProtocolVersion || first.HandshakeDuration() <= 0 {
		t.Errorf("version %d, handshake %s", first.ProtocolVersion(), first.HandshakeDuration())
	}
	ping(t, a.Addr)
	ping(t, b.Addr)
	select {
	case <-first.Done():
		t.Fatal("Done closed while the VM runs")
	default:
	}
	if _, ended := first.Exit(); ended {
		t.Fatal("Exit reports an end while the VM runs")
	}
	for _, rt := range []*launcher.Runtime{first, second} {
		rt.Stop(context.Background())
		exit := waitDone(t, rt, 10*time.Second)
		if !exit.Success() || exit.Stage != launcher.StageTerm {
			t.Errorf("exit = %v, want code 0 after SIGTERM", exit)
		}
		if !vmretest.ProcessGone(rt.Status().Pid) {
			t.Errorf("pid %d still runs", rt.Status().Pid)
		}
	}
}

func TestVersionMismatch(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"", "odysseygo"} {
		l := newLauncher(t, launcher.Config{HostName: host})
		_, err := l.Launch(t.Context(), vmretest.Command("mismatch"))
		name := host
		if name == "" {
			name = "vmre"
		}
		want := "handshake failed: protocol version mismatch " + name + ": 1 vm: 2"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("err = %v, want prefix %q", err, want)
		}
		if !errors.Is(err, vmre.ErrHandshakeFailed) || !errors.Is(err, vmre.ErrProtocolVersionMismatch) {
			t.Errorf("errors.Is fails for %v", err)
		}
		var mismatch *vmre.VersionMismatchError
		if !errors.As(err, &mismatch) || mismatch.HostVersion != 1 || mismatch.VMVersion != 2 {
			t.Errorf("errors.As = %+v", mismatch)
		}
		if !strings.Contains(err.Error(), "upgrade the host") {
			t.Errorf("no hint of which side to upgrade in %q", err)
		}
		var herr *launcher.LaunchError
		if !errors.As(err, &herr) || herr.Pid == 0 || !vmretest.ProcessGone(herr.Pid) {
			t.Errorf("VM of a failed launch still runs: %+v", herr)
		}
	}
}

func TestAcceptVersions(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{AcceptVersions: []uint{2}})
	rt, err := l.Launch(t.Context(), vmretest.Command("mismatch")) // sends version 2
	if err != nil {
		t.Fatal(err)
	}
	if rt.ProtocolVersion() != 2 {
		t.Errorf("version = %d, want 2", rt.ProtocolVersion())
	}
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)
}

func TestExitBeforeHandshake(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 30 * time.Second})
	start := time.Now()
	_, err := l.Launch(t.Context(), vmretest.Command("exit3"))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("launch succeeded")
	}
	if elapsed > 10*time.Second {
		t.Errorf("Launch took %s: a VM that exits must be reported at once, not at the handshake timeout", elapsed)
	}
	if !errors.Is(err, vmre.ErrProcessNotFound) || errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Errorf("sentinels wrong for %v", err)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || herr.Exit == nil || herr.Exit.Code != 3 {
		t.Fatalf("err = %#v, want exit code 3", err)
	}
	for _, want := range []string{"handshake failed: ", "exit code 3", "fatal: the database is locked"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 300 * time.Millisecond})
	_, err := l.Launch(t.Context(), vmretest.Command("never"))
	if !errors.Is(err, vmre.ErrHandshakeTimeout) || !errors.Is(err, vmre.ErrProcessNotFound) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("err = %v, want a handshake timeout", err)
	}
	if !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), "300ms") {
		t.Errorf("error %q does not name the timeout used", err)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("VM %d outlived its failed launch", herr.Pid)
	}
}

func TestContextCancelledDuringHandshake(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := l.Launch(ctx, vmretest.Command("never"))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("VM %d outlived its cancelled launch", herr.Pid)
	}
}

func TestStubbornVMIsKilled(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{GracefulTimeout: 300 * time.Millisecond})
	rt := mustLaunch(t, l, "stubborn")
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 10*time.Second)
	if !exit.Killed() || exit.Stage != launcher.StageKill {
		t.Fatalf("exit = %v, want killed by SIGKILL", exit)
	}
}

func TestStopContextCutsGraceShort(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{GracefulTimeout: time.Minute})
	rt := mustLaunch(t, l, "stubborn")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rt.Stop(ctx)
	if exit := waitDone(t, rt, 10*time.Second); !exit.Killed() {
		t.Fatalf("exit = %v, want killed when Stop's context ended", exit)
	}
}

func TestGrandchildrenStopWithTheVM(t *testing.T) {
	t.Parallel()
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out})
	rt := mustLaunch(t, l, "grandchild")
	grandchild := awaitGrandchild(t, out)
	if vmretest.ProcessGone(grandchild) {
		t.Fatal("grandchild not running before Stop")
	}
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)
	if !vmretest.ProcessGone(rt.Status().Pid) {
		t.Fatal("VM still runs after Done")
	}
	// The group's SIGKILL is sent before the VM is reaped, but the kernel
	// takes a moment to end the grandchild.
	if !eventually(5*time.Second, func() bool { return vmretest.ProcessGone(grandchild) }) {
		t.Fatalf("grandchild %d outlived Stop", grandchild)
	}
}

func TestStopIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "ok")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { rt.Stop(context.Background()) })
	}
	wg.Wait()
	exit := waitDone(t, rt, 10*time.Second)
	rt.Stop(context.Background()) // after the end: a no-op
	if again, _ := rt.Exit(); again != exit || !exit.Success() {
		t.Fatalf("exit = %v then %v", exit, again)
	}
}

func TestStopAfterExit(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "quick")
	exit := waitDone(t, rt, 10*time.Second)
	if !exit.Success() || exit.Stage != launcher.StageNone {
		t.Fatalf("exit = %v, want code 0 on its own", exit)
	}
	rt.Stop(context.Background())
	if again, _ := rt.Exit(); again != exit {
		t.Fatalf("Stop after the end changed the exit: %v", again)
	}
}

func TestManagerStopsInParallel(t *testing.T) {
	t.Parallel()
	const n, grace = 4, time.Second
	m := vmre.NewManager()
	l := newLauncher(t, launcher.Config{GracefulTimeout: grace, Manager: m})
	var rts []*launcher.Runtime
	for range n {
		rt, err := l.Launch(t.Context(), vmretest.Command("stubborn"))
		if err != nil {
			t.Fatal(err)
		}
		rts = append(rts, rt)
	}
	start := time.Now()
	m.Stop(context.Background())
	elapsed := time.Since(start)
	for _, rt := range rts {
		if exit, ended := rt.Exit(); !ended || !exit.Killed() {
			t.Errorf("after Manager.Stop: %v, ended %v", exit, ended)
		}
	}
	// One graceful timeout, not n of them.
	if elapsed >= grace*(n-1) {
		t.Errorf("Manager.Stop took %s for %d VMs with a %s graceful timeout: not in parallel", elapsed, n, grace)
	}
}

func TestManagerForgetsExitedRuntimes(t *testing.T) {
	t.Parallel()
	m := vmre.NewManager()
	l := newLauncher(t, launcher.Config{Manager: m})
	rt := mustLaunch(t, l, "quick")
	waitDone(t, rt, 10*time.Second)
	// AfterExit callbacks run before Done closes.
	if n := m.(interface{ Len() int }).Len(); n != 0 {
		t.Fatalf("manager still tracks %d runtimes after the VM ended", n)
	}
}

func TestLogLevels(t *testing.T) {
	t.Parallel()
	rec := vmretest.NewRecorder()
	l := newLauncher(t, launcher.Config{Logger: slog.New(rec), Name: "logvm"})
	rt := mustLaunch(t, l, "logs")
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)
	for _, c := range []struct {
		msg    string
		level  slog.Level
		stream string
		attr   string
	}{
		{"disk almost full", slog.LevelWarn, "stderr", "free_mb"},
		{"peer dropped", slog.LevelError, "stderr", "peer"},
		{"zap style", slog.LevelWarn, "stdout", "k"},
		{"hclog style", slog.LevelError, "stdout", ""},
		{"plain line", slog.LevelInfo, "stdout", ""},
	} {
		r, ok := rec.Find(c.msg)
		if !ok {
			t.Errorf("no record %q", c.msg)
			continue
		}
		if r.Level != c.level || r.Attrs["stream"] != c.stream || r.Attrs["vm"] != "logvm" || r.Attrs["pid"] != int64(rt.Status().Pid) {
			t.Errorf("record %q: level %v, attrs %v", c.msg, r.Level, r.Attrs)
		}
		if c.attr != "" && r.Attrs[c.attr] == nil {
			t.Errorf("record %q lost its field %q: %v", c.msg, c.attr, r.Attrs)
		}
		for _, k := range []string{"time", "ts", "@timestamp", "level", "msg"} {
			if _, ok := r.Attrs[k]; ok {
				t.Errorf("record %q keeps the VM's %q field", c.msg, k)
			}
		}
	}
}

func TestLongLineIsCapped(t *testing.T) {
	t.Parallel()
	rec := vmretest.NewRecorder()
	l := newLauncher(t, launcher.Config{Logger: slog.New(rec)})
	rt := mustLaunch(t, l, "bigline")
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)
	var capped, after bool
	for _, r := range rec.Records() {
		if len(r.Message) > launcher.MaxLineBytes {
			t.Fatalf("a record of %d bytes passed the cap", len(r.Message))
		}
		if strings.HasPrefix(r.Message, "xxxx") {
			capped = r.Attrs["truncated"] == true && len(r.Message) == launcher.MaxLineBytes
		}
		after = after || r.Message == "after the big line"
	}
	if !capped || !after {
		t.Fatalf("capped record %v, next line %v", capped, after)
	}
}

func TestLegacyShutdown(t *testing.T) {
	t.Parallel()
	const grace = 20 * time.Second
	l := newLauncher(t, launcher.Config{Legacy: true, LegacyShutdown: true, GracefulTimeout: grace})
	rt := mustLaunch(t, l, "legacy-stubborn")
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 2*grace)
	if !exit.Success() || exit.Stage < launcher.StageShutdown || exit.Killed() {
		t.Fatalf("exit = %v, want a graceful exit after /vm.VM/Shutdown", exit)
	}
	if elapsed := time.Since(start); elapsed > grace/2 {
		t.Fatalf("legacy VM took %s to stop: it waited for the graceful timeout", elapsed)
	}
}

func TestLegacyWithoutShutdownWaitsForSIGTERM(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{Legacy: true})
	rt := mustLaunch(t, l, "legacy")
	rt.Stop(context.Background())
	if exit := waitDone(t, rt, 10*time.Second); !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Fatalf("exit = %v, want code 0 after SIGTERM", exit)
	}
}

func TestLaunchAfterClose(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	l.Close()
	if _, err := l.Launch(t.Context(), vmretest.Command("ok")); err == nil || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Fatalf("Launch after Close: %v", err)
	}
}

// TestVMSurvivesThreadExits: on Linux the parent-death signal follows the
// thread that forked the VM. Goroutines that lock their thread and return
// without unlocking end their threads; the VM must not take that for its
// host's death.
func TestVMSurvivesThreadExits(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "ok")
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		})
	}
	wg.Wait()
	ping(t, rt.Status().Addr)
	if _, ended := rt.Exit(); ended {
		t.Fatal("the VM ended when host threads did")
	}
	rt.Stop(context.Background())
	if exit := waitDone(t, rt, 10*time.Second); !exit.Success() {
		t.Fatalf("exit = %v", exit)
	}
}

func TestOutputStats(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	for range 2 { // the counts of one name go on across its runs
		rt, err := l.Launch(t.Context(), vmretest.Command("logs"), launcher.WithName("logvm"))
		if err != nil {
			t.Fatal(err)
		}
		rt.Stop(context.Background())
		waitDone(t, rt, 10*time.Second)
	}
	got := map[string]uint64{}
	for _, s := range l.OutputStats() {
		if s.VM != "logvm" {
			t.Fatalf("stats of VM %q; only logvm ran", s.VM)
		}
		got[s.Stream+"/"+s.Level] = s.Lines
	}
	// Each run: on stderr a warning and an error of its own, then Serve's
	// records at info; on stdout a zap and a pino warning, an hclog error,
	// an hclog and a pino trace (counted as debug), a plain line at info.
	for key, min := range map[string]uint64{"stderr/warn": 2, "stderr/error": 2, "stderr/info": 2} {
		if got[key] < min {
			t.Errorf("%s: %d lines; want at least %d (%v)", key, got[key], min, got)
		}
	}
	if got["stdout/warn"] != 4 || got["stdout/error"] != 2 || got["stdout/info"] != 2 || got["stdout/debug"] != 4 {
		t.Errorf("stdout counts %v; want 4 warn, 2 error, 2 info, 4 debug", got)
	}
}
