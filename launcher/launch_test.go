package launcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// fetch returns the body of GET path from the VM at addr, with a client
// of its own.
func fetch(t *testing.T, addr, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func ping(t *testing.T, addr string) {
	t.Helper()
	if body := fetch(t, addr, "/ping"); body != "pong" {
		t.Fatalf("GET /ping = %q, want pong", body)
	}
}

func TestLaunch(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	if host, _, _ := net.SplitHostPort(l.EngineAddr()); host != "127.0.0.1" {
		t.Errorf("the engine listens on %s; want 127.0.0.1 only", l.EngineAddr())
	}
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
		exit := waitDone(t, rt)
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
	waitDone(t, rt)
}

// TestExitBeforeHandshake: a VM that exits before its handshake is
// reported when it exits, not at the handshake timeout (an hour here): the
// error is its exit, not a timeout.
func TestExitBeforeHandshake(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{HandshakeTimeout: time.Hour})
	// A launch that missed the exit would wait for the hour; the context
	// ends it first, with an error that says so.
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	_, err := l.Launch(ctx, vmretest.Command("exit3"))
	if err == nil {
		t.Fatal("launch succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("Launch returned only when its context ended (%v): the VM's exit was missed", err)
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
	exit := waitDone(t, rt)
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
	if exit := waitDone(t, rt); !exit.Killed() {
		t.Fatalf("exit = %v, want killed when Stop's context ended", exit)
	}
}

// TestGrandchildrenStopWithTheVM: Stop's SIGTERM goes to the VM's whole
// process group, and once the VM is reaped, what is left of the group gets
// SIGKILL. The VM's child ignores SIGTERM (the kernel says so before the
// stop), so only that SIGKILL can end it. The host runs under a reaper
// process, which becomes the grandchild's parent and sees what ended it.
func TestGrandchildrenStopWithTheVM(t *testing.T) {
	t.Parallel()
	r := startReaper(t, "host", hostVMModeKey+"=grandchild")
	grandchild := r.pid(t, "grandchild")
	r.pid(t, "vm")
	if !vmretest.SignalIgnored(grandchild, syscall.SIGTERM) {
		t.Fatalf("the grandchild %d does not ignore SIGTERM", grandchild)
	}
	r.send(t, "term") // the host stops its VM
	if got := r.await(t, "exit="); got != "code=0 signal= stage=sigterm" {
		t.Errorf("the VM's exit: %s; want code 0 after SIGTERM", got)
	}
	if got := r.reaped(t, grandchild); got != "signal=SIGKILL" {
		t.Errorf("the grandchild ended with %s; want the group's SIGKILL", got)
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
	exit := waitDone(t, rt)
	rt.Stop(context.Background()) // after the end: a no-op
	if again, _ := rt.Exit(); again != exit || !exit.Success() {
		t.Fatalf("exit = %v then %v", exit, again)
	}
}

func TestStopAfterExit(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "quick")
	exit := waitDone(t, rt)
	if !exit.Success() || exit.Stage != launcher.StageNone {
		t.Fatalf("exit = %v, want code 0 on its own", exit)
	}
	rt.Stop(context.Background())
	if again, _ := rt.Exit(); again != exit {
		t.Fatalf("Stop after the end changed the exit: %v", again)
	}
}

// TestManagerStopsInParallel: a vmre.Manager tracking the runtimes of a
// launcher sends every VM its SIGTERM before it waits for any. The VMs
// ignore SIGTERM and the graceful timeout is an hour: a Manager that
// waited for one VM before stopping the next would send one SIGTERM and
// hang. Once every VM has had its SIGTERM, the test ends Stop's context,
// which kills them all.
func TestManagerStopsInParallel(t *testing.T) {
	t.Parallel()
	const n = 4
	m := vmre.NewManager()
	l, events := newLauncherWithEvents(t, launcher.Config{GracefulTimeout: time.Hour})
	var rts []*launcher.Runtime
	for range n {
		rt := mustLaunch(t, l, "stubborn")
		m.TrackRuntime(rt)
		rts = append(rts, rt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		m.Stop(ctx)
	}()
	terms := map[int]bool{}
	for len(terms) < n {
		ev := events.Wait(t, vmretest.StopStage, func(ev vmretest.Event) bool {
			i := ev.Info.(launcher.StopStageInfo)
			return i.Stage == launcher.StageTerm && !terms[i.Pid]
		})
		terms[ev.Info.(launcher.StopStageInfo).Pid] = true
	}
	cancel()
	vmretest.WaitClosed(t, stopped, "Manager.Stop's return")
	for _, rt := range rts {
		if exit := waitDone(t, rt); !exit.Killed() || exit.Stage != launcher.StageKill {
			t.Errorf("exit = %v; want killed when Stop's context ended", exit)
		}
	}
}

// TestManagerForgetsExitedRuntimes: a runtime whose VM ended leaves the
// vmre.Manager that tracked it.
func TestManagerForgetsExitedRuntimes(t *testing.T) {
	t.Parallel()
	m := vmre.NewManager()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "quick")
	m.TrackRuntime(rt)
	waitDone(t, rt)
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
	waitDone(t, rt)
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
	waitDone(t, rt)
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

// TestLegacyShutdown: a plugin that ignores SIGTERM until /vm.VM/Shutdown
// is called stops gracefully with LegacyShutdown, without the graceful
// timeout (an hour here) that SIGTERM alone would have to sit out.
func TestLegacyShutdown(t *testing.T) {
	t.Parallel()
	l, events := newLauncherWithEvents(t, launcher.Config{Legacy: true, LegacyShutdown: true, GracefulTimeout: time.Hour})
	rt := mustLaunch(t, l, "legacy-stubborn")
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	if !exit.Success() || exit.Stage < launcher.StageShutdown || exit.Killed() {
		t.Fatalf("exit = %v, want a graceful exit after /vm.VM/Shutdown", exit)
	}
	var stages []launcher.Stage
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.StopStageInfo); ok {
			stages = append(stages, i.Stage)
			if i.Err != nil {
				t.Errorf("stop stage %v failed: %v", i.Stage, i.Err)
			}
		}
	}
	// SIGTERM follows Shutdown, as AvalancheGo's stopper sends it, unless
	// the VM, which exits once it has answered Shutdown, is gone first.
	if !slices.Equal(stages, []launcher.Stage{launcher.StageShutdown, launcher.StageTerm}) &&
		!slices.Equal(stages, []launcher.Stage{launcher.StageShutdown}) {
		t.Errorf("stop stages %v; want Shutdown, then SIGTERM unless the VM had exited", stages)
	}
}

func TestLegacyWithoutShutdownWaitsForSIGTERM(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{Legacy: true})
	rt := mustLaunch(t, l, "legacy")
	rt.Stop(context.Background())
	if exit := waitDone(t, rt); !exit.Success() || exit.Stage != launcher.StageTerm {
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

// TestLaunchOutOfFDs: a launch that fails for want of file descriptors
// gives back those it took. The host, a helper process, leaves itself two:
// enough for the lease pipe, not for the stdout pipe. Once the launch has
// failed, the host makes a pipe of its own: it can only if the launch
// closed the lease pipe's two ends.
func TestLaunchOutOfFDs(t *testing.T) {
	t.Parallel()
	out, err := vmretest.Command("host-nofds").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pipe=ok") {
		t.Fatalf("host: %v\n%s", err, out)
	}
}

// noFDsHostProcess is the host of TestLaunchOutOfFDs.
func noFDsHostProcess() int {
	l, err := launcher.New(launcher.Config{})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer l.Close()
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
		fmt.Println("setrlimit:", err)
		return 1
	}
	var fill []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}
	if len(fill) < 2 {
		fmt.Println("no descriptor to free")
		return 1
	}
	fill[0].Close()
	fill[1].Close()
	_, err = l.Launch(context.Background(), vmretest.Command("ok"))
	if lerr, ok := errors.AsType[*launcher.LaunchError](err); !ok || lerr.Phase != launcher.PhaseExec || !errors.Is(err, syscall.EMFILE) {
		fmt.Printf("launch: %v; want an exec error of too many open files\n", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Printf("pipe=%v: the failed launch kept descriptors\n", err)
		return 1
	}
	r.Close()
	w.Close()
	fmt.Println("pipe=ok")
	return 0
}

// TestVMSurvivesThreadExits: on Linux the parent-death signal follows the
// thread that forked the VM. Goroutines that lock their thread and return
// without unlocking end their threads; the VM must not take that for its
// host's death. Once those threads are gone, the VM says how many SIGTERMs
// it has received: none, before Stop sends one.
func TestVMSurvivesThreadExits(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "sigcount")
	tids := make(chan int, 64)
	var wg sync.WaitGroup
	for range cap(tids) {
		wg.Go(func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			tids <- unix.Gettid()
		})
	}
	wg.Wait()
	close(tids)
	// The kernel sends a parent-death signal as the thread exits; nothing
	// tells when a thread is gone but /proc. The main thread does not exit
	// (Go parks it instead), nor does a thread the goroutine did not end.
	for tid := range tids {
		if tid == os.Getpid() {
			continue
		}
		task := "/proc/self/task/" + strconv.Itoa(tid)
		if !vmretest.Eventually(func() bool { _, err := os.Stat(task); return err != nil }) {
			t.Fatalf("thread %d still runs", tid)
		}
	}
	if got := fetch(t, rt.Status().Addr, "/sigterms"); got != "0" {
		t.Fatalf("the VM received %s SIGTERMs when host threads ended; want none", got)
	}
	rt.Stop(context.Background())
	if exit := waitDone(t, rt); !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Fatalf("exit = %v; want code 0 after Stop's SIGTERM", exit)
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
		waitDone(t, rt)
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
