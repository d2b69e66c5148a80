package launcher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// The fault-injection suite: each VM below misbehaves in one way that a
// host must survive, and each subtest of TestFaults proves what the
// launcher does about it. docs/RELIABILITY.md's fault table points here.

// hugeLineBytes is the size of the line the "hugeline" VM writes: far more
// than MaxLineBytes, so a host that buffered it would show it in its heap.
const hugeLineBytes = 8 << 20

func crashBeforeHandshakeVM() int {
	fmt.Fprintln(os.Stderr, "loading the chain")
	panic("boom before the handshake")
}

func crashAfterHandshakeVM() int {
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	panic("boom after the handshake")
}

func killSelfVM() int {
	fmt.Fprintln(os.Stderr, "about to be killed")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// frozenVM handshakes, then stops itself with SIGSTOP: it can no longer act
// on SIGTERM, as a VM stuck in the kernel or in a debugger.
func frozenVM() int {
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	select {}
}

// escapeeVM starts a child in a session (and so a process group) of its
// own, which ignores SIGTERM and holds the VM's stdout and stderr open.
func escapeeVM(ctx context.Context, logger *slog.Logger) int {
	child := vmretest.Command("orphan")
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("escapee=%d\n", child.Process.Pid)
	return serve(ctx, logger)
}

// grandchildExitVM starts a child that ignores SIGTERM, handshakes, and
// exits 1 on its own, leaving the child behind in its process group.
func grandchildExitVM() int {
	child := vmretest.Command("orphan")
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("grandchild=%d\n", child.Process.Pid)
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 1
}

func closeStdoutVM(ctx context.Context, logger *slog.Logger) int {
	os.Stdout.Close()
	fmt.Fprintln(os.Stderr, "stdout closed")
	return serve(ctx, logger)
}

func hugeLineVM(ctx context.Context, logger *slog.Logger) int {
	os.Stdout.Write(bytes.Repeat([]byte("y"), hugeLineBytes))
	fmt.Println()
	fmt.Println("after the huge line")
	return serve(ctx, logger)
}

// floodVM writes numbered lines to stdout as fast as it can, all its life.
func floodVM(ctx context.Context, logger *slog.Logger) int {
	go func() {
		line := make([]byte, 0, 32)
		for i := 0; ; i++ {
			line = strconv.AppendInt(append(line[:0], "flood "...), int64(i), 10)
			if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
				return
			}
		}
	}()
	return serve(ctx, logger)
}

// twiceVM completes its handshake, calls Initialize a second time with
// another address and reports the answer, then serves /ping on its first
// address until SIGTERM.
func twiceVM(ctx context.Context) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := client.Initialize(ctx, ln.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = client.Initialize(ctx, "127.0.0.1:1")
	if err == nil {
		fmt.Fprintln(os.Stderr, "second initialize: ok")
	} else {
		fmt.Fprintf(os.Stderr, "second initialize: %s\n", connect.CodeOf(err))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("pong")) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	<-term
	srv.Close()
	return 0
}

// lateVM shows its token and never calls back.
func lateVM() int {
	fmt.Printf("token=%s\n", os.Getenv(vmre.EngineTokenKey))
	waitSignal(syscall.SIGTERM)
	return 0
}

// TestFaults runs the fault-injection suite against real VM processes and
// checks that the host's open fds are where they started once it is over.
// The two faults that measure the host's heap run first, alone; the others
// run in parallel.
func TestFaults(t *testing.T) {
	fdsBefore := openFDs(t)
	t.Cleanup(func() { checkFDs(t, fdsBefore) })

	t.Run("huge line", testHugeLine)
	t.Run("log flood", testLogFlood)

	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"exec fails", testExecFails},
		{"crash before the handshake", testCrashBeforeHandshake},
		{"killed before the handshake", testKilledBeforeHandshake},
		{"hang before the handshake ignoring SIGTERM", testHangIgnoringSIGTERM},
		{"crash after the handshake", testCrashAfterHandshake},
		{"frozen after the handshake", testFrozen},
		{"grandchild escapes the process group", testEscapee},
		{"grandchild of a VM that exits on its own", testGrandchildOfExitedVM},
		{"stdout closed early", testStdoutClosed},
		{"initialize twice", testInitializeTwice},
		{"token after the handshake timeout", testTokenAfterTimeout},
		{"token after the launch ends", testTokenAfterEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t)
		})
	}
}

// checkFDs fails the test unless the process's open fds come back to want.
// Connections of finished HTTP exchanges close asynchronously, so it gives
// them a moment.
func checkFDs(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := openFDs(t)
	for got > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = openFDs(t)
	}
	if got > want {
		t.Errorf("open fds: %d before the suite, %d after", want, got)
	}
}

func testHugeLine(t *testing.T) {
	log := newWatchedLog()
	raw := new(countingWriter)
	l := newLauncher(t, launcher.Config{Logger: log.logger(), Stdout: raw})
	heap := watchHeap()
	rt, err := l.Launch(t.Context(), vmretest.Command("hugeline"))
	if err != nil {
		heap.end()
		t.Fatal(err)
	}
	log.await(t, "after the huge line", 10*time.Second)
	growth, allocated, _ := heap.end()
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)

	t.Logf("a %d MiB line: heap in use grew %d KiB at most, %d KiB allocated in all, %d bytes of raw stdout",
		hugeLineBytes>>20, growth>>10, allocated>>10, raw.n())
	// The host reads through a fixed buffer of MaxLineBytes: the line
	// must not show in its heap, nor in what it allocates.
	if growth > 4<<20 || allocated > hugeLineBytes/2 {
		t.Errorf("the host's heap grew %d KiB and it allocated %d KiB for one %d MiB line: it buffers lines",
			growth>>10, allocated>>10, hugeLineBytes>>20)
	}
	var capped int
	for _, r := range log.rec.Records() {
		if len(r.Message) > launcher.MaxLineBytes {
			t.Fatalf("a vmretest.Record of %d bytes passed the cap of %d", len(r.Message), launcher.MaxLineBytes)
		}
		if strings.HasPrefix(r.Message, "yyyy") {
			capped++
			if len(r.Message) != launcher.MaxLineBytes || r.Attrs["truncated"] != true || r.Attrs["stream"] != "stdout" {
				t.Errorf("capped record: %d bytes, attrs %v; want %d bytes, truncated, stdout",
					len(r.Message), r.Attrs, launcher.MaxLineBytes)
			}
		}
	}
	if capped != 1 {
		t.Errorf("%d records of the huge line; want 1, capped", capped)
	}
	// The raw copy is capped the same way: the line, a newline, the next line.
	if n := raw.n(); n > launcher.MaxLineBytes+1+len("after the huge line\n") {
		t.Errorf("Config.Stdout got %d bytes; want the capped line and the next", n)
	}
}

func testLogFlood(t *testing.T) {
	const floodFor = time.Second
	counter := &floodCounter{}
	l := newLauncher(t, launcher.Config{Logger: slog.New(counter), GracefulTimeout: 5 * time.Second})
	heap := watchHeap()
	rt, err := l.Launch(t.Context(), vmretest.Command("flood"))
	if err != nil {
		heap.end()
		t.Fatal(err)
	}
	<-time.After(floodFor) // the fault lasts this long: not a wait for an event
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 10*time.Second)
	stopped := time.Since(start)
	growth, _, retained := heap.end()

	lines, gaps, first := counter.result()
	t.Logf("log flood: %d lines in %s (%.0f lines/s), heap in use grew %d KiB at most and %d KiB after a GC, Stop took %s, %v",
		lines, floodFor+stopped, float64(lines)/(floodFor+stopped).Seconds(), growth>>10, retained>>10, stopped.Round(time.Millisecond), exit)
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM: a flooding VM still stops gracefully", exit)
	}
	if stopped > 3*time.Second {
		t.Errorf("Stop took %s with a VM flooding its logs", stopped)
	}
	// The pipe applies backpressure: the VM waits for the host, and no line
	// is dropped or repeated.
	if first != 0 || gaps != 0 {
		t.Errorf("the host saw line %d first and %d gaps in the numbering; want every line from 0, in order", first, gaps)
	}
	if lines < 1000 {
		t.Errorf("only %d lines in %s: the host does not keep up", lines, floodFor)
	}
	// Each line makes garbage, which the GC paces; none of it may stay.
	if growth > 16<<20 || retained > 4<<20 {
		t.Errorf("the host's heap grew %d KiB under a log flood, and kept %d KiB", growth>>10, retained>>10)
	}
}

func testExecFails(t *testing.T) {
	l := newLauncher(t, launcher.Config{})
	_, err := l.Launch(t.Context(), exec.Command("/nonexistent/vm"))
	if !errors.Is(err, vmre.ErrHandshakeFailed) || errors.Is(err, vmre.ErrProcessNotFound) {
		t.Fatalf("err = %v; want a handshake failure of the exec phase", err)
	}
	if !strings.HasPrefix(err.Error(), "handshake failed: exec /nonexistent/vm: ") {
		t.Errorf("error %q does not name the exec phase and the path", err)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || herr.Pid != 0 {
		t.Errorf("HandshakeError = %+v; want Pid 0 for a VM that never started", herr)
	}
}

func testCrashBeforeHandshake(t *testing.T) {
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger(), HandshakeTimeout: 30 * time.Second})
	start := time.Now()
	_, err := l.Launch(t.Context(), vmretest.Command("crash-before"))
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Launch took %s: a crash must be reported at once", elapsed)
	}
	if !errors.Is(err, vmre.ErrProcessNotFound) || errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("err = %v; want ErrProcessNotFound and no timeout", err)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || herr.Exit == nil || herr.Exit.Code != 2 || herr.Exit.Stage != launcher.StageNone {
		t.Fatalf("err = %#v; want exit code 2, the code of a Go panic", err)
	}
	for _, want := range []string{"exit code 2", "loading the chain", "panic: boom before the handshake"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if r := log.await(t, "panic: boom before the handshake", 10*time.Second); r.Level != slog.LevelError {
		t.Errorf("the panic was logged at %v; want ERROR", r.Level)
	}
	if !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("pid %d still runs", herr.Pid)
	}
}

func testKilledBeforeHandshake(t *testing.T) {
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 30 * time.Second})
	_, err := l.Launch(t.Context(), vmretest.Command("killself"))
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || herr.Exit == nil || !herr.Exit.Killed() || herr.Exit.Code != -1 {
		t.Fatalf("err = %v; want a VM killed by SIGKILL", err)
	}
	for _, want := range []string{"signal: killed", "about to be killed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// testHangIgnoringSIGTERM: a VM that never calls back and ignores SIGTERM
// is killed at the handshake timeout, not after a further graceful timeout.
func testHangIgnoringSIGTERM(t *testing.T) {
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 300 * time.Millisecond, GracefulTimeout: time.Minute})
	start := time.Now()
	_, err := l.Launch(t.Context(), vmretest.Command("orphan")) // ignores SIGTERM, never calls back
	elapsed := time.Since(start)
	if !errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("err = %v; want a handshake timeout", err)
	}
	if elapsed > 10*time.Second {
		t.Errorf("Launch took %s: the VM got a graceful timeout after its handshake timeout", elapsed)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("VM %d outlived its failed launch", herr.Pid)
	}
}

func testCrashAfterHandshake(t *testing.T) {
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger()})
	rt := mustLaunch(t, l, "crash-after")
	exit := waitDone(t, rt, 10*time.Second)
	if exit.Code != 2 || exit.Stage != launcher.StageNone || exit.Success() {
		t.Fatalf("exit = %v; want code 2, on its own", exit)
	}
	if tail := strings.Join(rt.LastStderr(), "\n"); !strings.Contains(tail, "panic: boom after the handshake") {
		t.Errorf("LastStderr lacks the panic:\n%s", tail)
	}
	if r := log.await(t, "panic: boom after the handshake", time.Second); r.Level != slog.LevelError {
		t.Errorf("the panic was logged at %v; want ERROR", r.Level)
	}
	if r := log.await(t, "vm exited", time.Second); r.Level != slog.LevelWarn || !strings.Contains(fmt.Sprint(r.Attrs["exit"]), "exit code 2") {
		t.Errorf("vm exited record: %v %v; want WARN with exit code 2", r.Level, r.Attrs)
	}
	rt.Stop(context.Background()) // a no-op once it has ended
	if again, _ := rt.Exit(); again != exit {
		t.Errorf("Stop after the crash changed the exit to %v", again)
	}
}

// testFrozen: a VM stopped by SIGSTOP cannot act on SIGTERM; SIGKILL at
// the graceful timeout ends it.
func testFrozen(t *testing.T) {
	const grace = 300 * time.Millisecond
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger(), GracefulTimeout: grace})
	rt := mustLaunch(t, l, "frozen")
	pid := rt.Status().Pid
	if !eventually(10*time.Second, func() bool { return processState(pid) == 'T' }) {
		t.Fatalf("VM %d did not stop itself (state %q)", pid, processState(pid))
	}
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 10*time.Second)
	if elapsed := time.Since(start); elapsed < grace {
		t.Errorf("a frozen VM ended %s after Stop, before the graceful timeout of %s", elapsed, grace)
	}
	if !exit.Killed() || exit.Stage != launcher.StageKill {
		t.Fatalf("exit = %v; want SIGKILL after the graceful timeout", exit)
	}
	log.await(t, "sending SIGKILL", time.Second)
}

// testEscapee: a grandchild in a process group of its own is out of reach
// of the group's signals and holds the VM's pipes open; the runtime still
// ends, draining the pipes for at most a moment, and closes its ends.
func testEscapee(t *testing.T) {
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out})
	rt := mustLaunch(t, l, "escapee")
	escapee, err := strconv.Atoi(out.await(t, "escapee=", 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(escapee, syscall.SIGKILL) })
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 10*time.Second)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Done took %s: the runtime waited for a process that holds its pipes", elapsed)
	}
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM", exit)
	}
	if vmretest.ProcessGone(escapee) {
		t.Log("the escaped grandchild is gone too")
	} else {
		t.Logf("the escaped grandchild %d still runs, as documented: setsid puts it out of the stop's reach", escapee)
	}
}

func testGrandchildOfExitedVM(t *testing.T) {
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out})
	rt := mustLaunch(t, l, "grandchild-exit")
	grandchild := awaitGrandchild(t, out)
	exit := waitDone(t, rt, 10*time.Second)
	if exit.Code != 1 || exit.Stage != launcher.StageNone {
		t.Errorf("exit = %v; want code 1 on its own", exit)
	}
	if !eventually(5*time.Second, func() bool { return vmretest.ProcessGone(grandchild) }) {
		t.Errorf("grandchild %d outlived the VM that exited on its own", grandchild)
	}
}

func testStdoutClosed(t *testing.T) {
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger()})
	rt := mustLaunch(t, l, "closestdout")
	log.await(t, "stdout closed", 10*time.Second)
	ping(t, rt.Status().Addr)
	rt.Stop(context.Background())
	exit := waitDone(t, rt, 10*time.Second)
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Fatalf("exit = %v; want code 0 after SIGTERM", exit)
	}
	// The VM's last words come through stderr after stdout ended.
	if r := log.await(t, "shutting down", time.Second); r.Attrs["stream"] != "stderr" {
		t.Errorf("shutting down record: %v", r.Attrs)
	}
}

func testInitializeTwice(t *testing.T) {
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger()})
	rt := mustLaunch(t, l, "twice")
	log.await(t, "second initialize: already_exists", 10*time.Second)
	ping(t, rt.Status().Addr) // the first address stands
	rt.Stop(context.Background())
	if exit := waitDone(t, rt, 10*time.Second); !exit.Success() {
		t.Errorf("exit = %v; want code 0", exit)
	}
}

func testTokenAfterTimeout(t *testing.T) {
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out, HandshakeTimeout: 500 * time.Millisecond})
	_, err := l.Launch(t.Context(), vmretest.Command("late"))
	if !errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("err = %v; want a handshake timeout", err)
	}
	token := out.await(t, "token=", time.Second)
	_, err = client.Initialize(t.Context(), "127.0.0.1:40000", client.WithEngine(l.EngineAddr(), token))
	if connect.CodeOf(err) != connect.CodeNotFound || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Errorf("Initialize after the timeout: %v; want not_found", err)
	}
}

func testTokenAfterEnd(t *testing.T) {
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out})
	rt := mustLaunch(t, l, "env")
	token := out.await(t, "env: "+vmre.EngineTokenKey+"=", 10*time.Second)
	stolen := client.WithEngine(l.EngineAddr(), token)
	_, err := client.Initialize(t.Context(), "127.0.0.1:40000", stolen)
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("Initialize with the token of a running VM: %v; want already_exists", err)
	}
	rt.Stop(context.Background())
	waitDone(t, rt, 10*time.Second)
	_, err = client.Initialize(t.Context(), "127.0.0.1:40000", stolen)
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Initialize with the token of a stopped VM: %v; want not_found", err)
	}
}

// eventually reports whether cond holds within d, checking every 10 ms.
// It is for states nothing signals, such as a process's run state.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// processState returns the state letter of pid in /proc (R, S, T, Z...),
// or 0 when it cannot be read.
func processState(pid int) byte {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// bell wakes every waiter when rung.
type bell struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *bell) ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// wait returns a channel closed at the next ring.
func (b *bell) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// watchedLog is a recorder whose records can be awaited.
type watchedLog struct {
	rec  *vmretest.Recorder
	bell *bell
}

func newWatchedLog() *watchedLog { return &watchedLog{rec: vmretest.NewRecorder(), bell: new(bell)} }

func (w *watchedLog) logger() *slog.Logger { return slog.New(ringingHandler{w.rec, w.bell}) }

// await returns the first vmretest.Record whose message is msg, failing the test if
// none comes within d.
func (w *watchedLog) await(t *testing.T, msg string, d time.Duration) vmretest.Record {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		next := w.bell.wait()
		if r, ok := w.rec.Find(msg); ok {
			return r
		}
		select {
		case <-next:
		case <-timeout.C:
			t.Fatalf("no vmretest.Record %q within %s", msg, d)
		}
	}
}

// ringingHandler rings a bell after each vmretest.Record it passes on.
type ringingHandler struct {
	slog.Handler
	bell *bell
}

func (h ringingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	h.bell.ring()
	return err
}

func (h ringingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ringingHandler{h.Handler.WithAttrs(attrs), h.bell}
}

func (h ringingHandler) WithGroup(name string) slog.Handler {
	return ringingHandler{h.Handler.WithGroup(name), h.bell}
}

// lineLog is a Config.Stdout that keeps the lines written to it.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	bell  bell
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.lines = append(w.lines, strings.Split(strings.TrimSuffix(string(p), "\n"), "\n")...)
	w.mu.Unlock()
	w.bell.ring()
	return len(p), nil
}

// await returns the rest of the first line that starts with prefix, failing
// the test if none comes within d.
func (w *lineLog) await(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		next := w.bell.wait()
		w.mu.Lock()
		for _, line := range w.lines {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				w.mu.Unlock()
				return rest
			}
		}
		w.mu.Unlock()
		select {
		case <-next:
		case <-timeout.C:
			t.Fatalf("no line %q... within %s", prefix, d)
		}
	}
}

// awaitGrandchild returns the pid of the grandchild a "grandchild" VM
// announces on stdout, and kills it when the test ends if it still runs.
func awaitGrandchild(t *testing.T, out *lineLog) int {
	t.Helper()
	pid, err := strconv.Atoi(out.await(t, "grandchild=", 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !vmretest.ProcessGone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// countingWriter counts what is written to it.
type countingWriter struct {
	mu    sync.Mutex
	bytes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.bytes += len(p)
	w.mu.Unlock()
	return len(p), nil
}

func (w *countingWriter) n() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes
}

// floodCounter is a slog.Handler that checks the numbering of the flood
// VM's lines without keeping them.
type floodCounter struct {
	mu          sync.Mutex
	lines, gaps int
	first, next int64
}

func (h *floodCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *floodCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *floodCounter) WithGroup(string) slog.Handler            { return h }

func (h *floodCounter) Handle(_ context.Context, r slog.Record) error {
	s, ok := strings.CutPrefix(r.Message, "flood ")
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lines == 0 {
		h.first = n
	} else if n != h.next {
		h.gaps++
	}
	h.lines++
	h.next = n + 1
	return nil
}

func (h *floodCounter) result() (lines, gaps int, first int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lines, h.gaps, h.first
}

// heapWatch samples the heap in use every few milliseconds, keeping its peak.
type heapWatch struct {
	base runtime.MemStats
	peak uint64
	stop chan struct{}
	done chan struct{}
}

func watchHeap() *heapWatch {
	w := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GC()
	runtime.ReadMemStats(&w.base)
	w.peak = w.base.HeapInuse
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				w.peak = max(w.peak, m.HeapInuse)
			}
		}
	}()
	return w
}

// end stops the sampling and returns the peak growth of the heap in use,
// the bytes allocated since watchHeap, and the growth of the heap in use
// that a garbage collection does not undo.
func (w *heapWatch) end() (growth, allocated, retained uint64) {
	close(w.stop)
	<-w.done
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	growth = sub(max(w.peak, m.HeapInuse), w.base.HeapInuse)
	allocated = m.TotalAlloc - w.base.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&m)
	return growth, allocated, sub(m.HeapInuse, w.base.HeapInuse)
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
