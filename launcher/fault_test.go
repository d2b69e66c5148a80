package launcher_test

import (
	"bufio"
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
	blockForever()
	return 0
}

// frozenVM handshakes, then stops itself with SIGSTOP: it can no longer act
// on SIGTERM, as a VM stuck in the kernel or in a debugger.
func frozenVM() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	<-term
	return frozenTermCode
}

// frozenTermCode is the exit code of a frozen VM whose SIGTERM handler
// ran.
const frozenTermCode = 7

// escapeeVM starts a child in a session (and so a process group) of its
// own, which ignores SIGTERM and holds the VM's stdout and stderr open.
func escapeeVM() int {
	child, err := startIgnoringChild(true, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("escapee=%d\n", child)
	return serve(context.Background(), pingMux())
}

// grandchildExitVM starts a child that ignores SIGTERM, handshakes, and
// exits 1 on its own, leaving the child behind in its process group.
func grandchildExitVM() int {
	child, err := startIgnoringChild(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("grandchild=%d\n", child)
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 1
}

func closeStdoutVM() int {
	os.Stdout.Close()
	fmt.Fprintln(os.Stderr, "stdout closed")
	return serve(context.Background(), pingMux())
}

func hugeLineVM() int {
	os.Stdout.Write(bytes.Repeat([]byte("y"), hugeLineBytes))
	fmt.Println()
	fmt.Println("after the huge line")
	return serve(context.Background(), pingMux())
}

// floodVM writes numbered lines to stdout as fast as it can, all its life.
func floodVM() int {
	go func() {
		line := make([]byte, 0, 32)
		for i := 0; ; i++ {
			line = strconv.AppendInt(append(line[:0], "flood "...), int64(i), 10)
			if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
				return
			}
		}
	}()
	return serve(context.Background(), pingMux())
}

// lastWordsLines is how many lines the "lastwords" VM writes as it exits:
// fewer bytes than a pipe holds, so that it never waits for the host.
const lastWordsLines = 2000

// lastWordsVM handshakes, then writes lastWordsLines numbered lines to
// stdout and exits 0 at once.
func lastWordsVM() int {
	if _, err := initializeListening(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for i := range lastWordsLines {
		fmt.Fprintf(w, "flood %d\n", i)
	}
	w.Flush()
	return 0
}

// twiceVM completes its handshake, calls Initialize a second time with
// another address, then serves /ping on its first address until SIGTERM.
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
	client.Initialize(ctx, "127.0.0.1:1") // the host sees the answer in its events
	mux := pingMux()
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	<-term
	srv.Close()
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
		{"stopped by SIGSTOP", testStoppedVMStopsGracefully},
		{"grandchild escapes the process group", testEscapee},
		{"runaway out of reach", testRunawayOutOfReach},
		{"grandchild of a VM that exits on its own", testGrandchildOfExitedVM},
		{"stdout closed early", testStdoutClosed},
		{"last words of a VM under a slow host", testLastWords},
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
// The engine closes the connections of VMs that are gone on its own
// goroutines, which nothing reports: it polls.
func checkFDs(t *testing.T, want int) {
	t.Helper()
	got := openFDs(t)
	if !vmretest.Eventually(func() bool { got = openFDs(t); return got <= want }) {
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
	// The subject is the log output: the record of the line after the huge
	// one says the huge one has been read.
	log.await(t, "after the huge line")
	growth, allocated, _ := heap.end()
	rt.Stop(context.Background())
	waitDone(t, rt)

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
			t.Fatalf("a record of %d bytes passed the cap of %d", len(r.Message), launcher.MaxLineBytes)
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
	// The graceful timeout is far longer than any stop takes: a VM that
	// ends with StageTerm stopped on SIGTERM, however loaded the machine.
	l := newLauncher(t, launcher.Config{Logger: slog.New(counter), GracefulTimeout: vmretest.WaitTimeout})
	heap := watchHeap()
	rt, err := l.Launch(t.Context(), vmretest.Command("flood"))
	if err != nil {
		heap.end()
		t.Fatal(err)
	}
	<-time.After(floodFor) // the fault lasts this long: not a wait for an event
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	stopped := time.Since(start)
	growth, _, retained := heap.end()

	lines, gaps, first := counter.result()
	t.Logf("log flood: %d lines in %s (%.0f lines/s), heap in use grew %d KiB at most and %d KiB after a GC, Stop took %s, %v",
		lines, floodFor+stopped, float64(lines)/(floodFor+stopped).Seconds(), growth>>10, retained>>10, stopped.Round(time.Millisecond), exit)
	// A flooding VM still stops on SIGTERM: the flood does not hold up the
	// signal, the VM's shutdown, or the host's reading to its end.
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM: a flooding VM still stops gracefully", exit)
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
	if !errors.As(err, &herr) || herr.Pid != 0 || herr.Phase != launcher.PhaseExec {
		t.Errorf("LaunchError = %+v; want the exec phase and Pid 0 for a VM that never started", herr)
	}
}

// testCrashBeforeHandshake: the crash is reported when it happens, with
// its exit and last lines, not at the handshake timeout (which is long).
func testCrashBeforeHandshake(t *testing.T) {
	rec := vmretest.NewRecorder()
	l := newLauncher(t, launcher.Config{Logger: slog.New(rec), HandshakeTimeout: time.Hour})
	_, err := l.Launch(t.Context(), vmretest.Command("crash-before"))
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
	// The subject is the log output. Launch returned once the VM was
	// reaped and its output read: the record is there.
	if r, ok := rec.Find("panic: boom before the handshake"); !ok || r.Level != slog.LevelError {
		t.Errorf("the panic was logged %v at %v; want at ERROR", ok, r.Level)
	}
	if !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("pid %d still runs", herr.Pid)
	}
}

func testKilledBeforeHandshake(t *testing.T) {
	l := newLauncher(t, launcher.Config{HandshakeTimeout: time.Hour})
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

// testHangIgnoringSIGTERM: a VM that never calls back is killed at the
// handshake timeout with SIGKILL at once: it gets no SIGTERM and no
// graceful timeout (here an hour) that a VM ignoring SIGTERM would sit out.
func testHangIgnoringSIGTERM(t *testing.T) {
	l, events := newLauncherWithEvents(t, launcher.Config{HandshakeTimeout: 300 * time.Millisecond, GracefulTimeout: time.Hour})
	_, err := l.Launch(t.Context(), vmretest.Command("orphan")) // ignores SIGTERM, never calls back
	if !errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("err = %v; want a handshake timeout", err)
	}
	wantKinds(t, events.Kinds(), vmretest.Started, vmretest.StopStage, vmretest.Exited, vmretest.LaunchFailed)
	list := events.List()
	if i := list[1].Info.(launcher.StopStageInfo); i.Stage != launcher.StageKill || i.Reason != launcher.ReasonHandshakeAbandoned {
		t.Errorf("StopStage %+v; want SIGKILL for an abandoned handshake", i)
	}
	if exit := list[2].Info.(launcher.ExitInfo).Exit; !exit.Killed() {
		t.Errorf("exit %v; want killed by SIGKILL", exit)
	}
	var herr *launcher.LaunchError
	if !errors.As(err, &herr) || !vmretest.ProcessGone(herr.Pid) {
		t.Errorf("VM %d outlived its failed launch", herr.Pid)
	}
}

func testCrashAfterHandshake(t *testing.T) {
	rec := vmretest.NewRecorder()
	l := newLauncher(t, launcher.Config{Logger: slog.New(rec)})
	rt := mustLaunch(t, l, "crash-after")
	exit := waitDone(t, rt)
	if exit.Code != 2 || exit.Stage != launcher.StageNone || exit.Success() {
		t.Fatalf("exit = %v; want code 2, on its own", exit)
	}
	if tail := strings.Join(rt.LastStderr(), "\n"); !strings.Contains(tail, "panic: boom after the handshake") {
		t.Errorf("LastStderr lacks the panic:\n%s", tail)
	}
	// The subject is the log output. Done closed once the VM's output was
	// read to its end and "vm exited" logged: the records are there.
	if r, ok := rec.Find("panic: boom after the handshake"); !ok || r.Level != slog.LevelError {
		t.Errorf("the panic was logged %v at %v; want at ERROR", ok, r.Level)
	}
	if r, ok := rec.Find("vm exited"); !ok || r.Level != slog.LevelWarn || !strings.Contains(fmt.Sprint(r.Attrs["exit"]), "exit code 2") {
		t.Errorf("vm exited record: %v %v %v; want WARN with exit code 2", ok, r.Level, r.Attrs)
	}
	rt.Stop(context.Background()) // a no-op once it has ended
	if again, _ := rt.Exit(); again != exit {
		t.Errorf("Stop after the crash changed the exit to %v", again)
	}
}

// testFrozen: a VM stopped by SIGSTOP (here by itself) gets SIGCONT after
// SIGTERM, as systemd sends them, so that it runs again and its SIGTERM
// handler ends it gracefully, long before the graceful timeout.
func testFrozen(t *testing.T) {
	l, events := newLauncherWithEvents(t, launcher.Config{GracefulTimeout: time.Minute})
	rt := mustLaunch(t, l, "frozen")
	pid := rt.Status().Pid
	// Nothing tells when a process has stopped itself: poll its state.
	if !vmretest.Eventually(func() bool { return vmretest.ProcessState(pid) == 'T' }) {
		t.Fatalf("VM %d did not stop itself (state %q)", pid, vmretest.ProcessState(pid))
	}
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	if exit.Code != frozenTermCode || exit.Stage != launcher.StageTerm {
		t.Fatalf("exit = %v; want code %d (its SIGTERM handler ran) after SIGTERM, not SIGKILL", exit, frozenTermCode)
	}
	var stages []launcher.StopStageInfo
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.StopStageInfo); ok {
			stages = append(stages, i)
		}
	}
	if len(stages) != 1 || stages[0].Stage != launcher.StageTerm || stages[0].Err != nil {
		t.Errorf("stop stages %+v; want SIGTERM alone", stages)
	}
}

// testStoppedVMStopsGracefully: a VM on client.Serve that something
// stopped with SIGSTOP (a debugger, an operator's kill -STOP) gets SIGCONT
// with its SIGTERM, and shuts down gracefully rather than sitting out the
// graceful timeout.
func testStoppedVMStopsGracefully(t *testing.T) {
	l := newLauncher(t, launcher.Config{GracefulTimeout: time.Hour})
	rt := mustLaunch(t, l, "ok")
	pid := rt.Status().Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if !vmretest.Eventually(func() bool { return vmretest.ProcessState(pid) == 'T' }) {
		t.Fatalf("VM %d did not stop (state %q)", pid, vmretest.ProcessState(pid))
	}
	rt.Stop(context.Background())
	if exit := waitDone(t, rt); !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM", exit)
	}
}

// testEscapee: a grandchild in a session of its own, which ignores
// SIGTERM and holds the VM's pipes, is out of reach of the group's
// signals; the stop finds it by its parent chain as it sends SIGTERM, and
// kills it with the VM's group when the VM, which exits 0, is reaped.
func testEscapee(t *testing.T) {
	out := new(lineLog)
	l := newLauncher(t, launcher.Config{Stdout: out})
	rt := mustLaunch(t, l, "escapee")
	escapee, err := strconv.Atoi(out.await(t, "escapee="))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(escapee, syscall.SIGKILL) })
	for _, fd := range []string{"1", "2"} {
		if link, err := os.Readlink("/proc/" + strconv.Itoa(escapee) + "/fd/" + fd); err != nil || !strings.HasPrefix(link, "pipe:") {
			t.Fatalf("the escapee's fd %s is %q (%v); want the VM's pipe", fd, link, err)
		}
	}
	if !vmretest.SignalIgnored(escapee, syscall.SIGTERM) {
		t.Fatalf("the escapee %d does not ignore SIGTERM", escapee)
	}
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM", exit)
	}
	if !vmretest.Eventually(func() bool { return vmretest.ProcessGone(escapee) }) {
		t.Errorf("the escapee %d outlived its VM's stop", escapee)
	}
}

// testRunawayOutOfReach: a grandchild that left the VM's session and lost
// its parent (a double fork), with the test's environment rather than the
// VM's, under a host that runs no Subreaper, has no tie to the VM left: it
// is out of reach (docs/RELIABILITY.md, known limits). The runtime still
// ends, and closes its pipe ends, though the runaway holds the VM's pipes.
func testRunawayOutOfReach(t *testing.T) {
	out := new(lineLog)
	events := vmretest.NewEvents()
	l := newLauncher(t, launcher.Config{Stdout: out, Hooks: events.Hooks()})
	cmd := vmretest.Command("runaway")
	cmd.Env = append(cmd.Env, runawayNameKey+"=x", runawayBareKey+"=1")
	rt, err := l.Launch(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	runaway, err := strconv.Atoi(out.await(t, "runaway-x="))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(runaway, syscall.SIGKILL) })
	start := time.Now()
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	t.Logf("Done %s after Stop, with the runaway holding the VM's pipes", time.Since(start).Round(time.Millisecond))
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Errorf("exit = %v; want code 0 after SIGTERM", exit)
	}
	if vmretest.ProcessGone(runaway) {
		t.Errorf("the runaway %d is gone: it was not out of the stop's reach, and the test proves nothing", runaway)
	}
	unread := map[string]bool{}
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.OutputDropInfo); ok && i.Unread {
			unread[i.Stream] = true
		}
	}
	if !unread["stdout"] || !unread["stderr"] {
		t.Errorf("streams reported unread: %v; want both, which the runaway holds open", unread)
	}
}

// testGrandchildOfExitedVM: a VM that exits on its own leaves a child that
// ignores SIGTERM; the runtime kills the VM's group when it reaps the VM.
// The test runs the host under a reaper process, which becomes the
// grandchild's parent and sees what ended it.
func testGrandchildOfExitedVM(t *testing.T) {
	r := startReaper(t, "host", hostVMModeKey+"=grandchild-exit")
	grandchild := r.pid(t, "grandchild")
	if got := r.await(t, "exit="); got != "code=1 signal= stage=none" {
		t.Errorf("the VM's exit: %s; want code 1 on its own", got)
	}
	if got := r.reaped(t, grandchild); got != "signal=SIGKILL" {
		t.Errorf("the grandchild ended with %s; want the group's SIGKILL", got)
	}
}

func testStdoutClosed(t *testing.T) {
	log := newWatchedLog()
	l := newLauncher(t, launcher.Config{Logger: log.logger()})
	rt := mustLaunch(t, l, "closestdout")
	// The subject is the log output: stderr is still logged once stdout
	// has closed.
	log.await(t, "stdout closed")
	ping(t, rt.Status().Addr)
	rt.Stop(context.Background())
	exit := waitDone(t, rt)
	if !exit.Success() || exit.Stage != launcher.StageTerm {
		t.Fatalf("exit = %v; want code 0 after SIGTERM", exit)
	}
	// The VM's last words come through stderr after stdout ended; Done
	// closed once they were read.
	if r, ok := log.rec.Find("shutting down"); !ok || r.Attrs["stream"] != "stderr" {
		t.Errorf("shutting down record %v: %v", ok, r.Attrs)
	}
}

// testLastWords: a VM writes its last lines and exits while the host's
// handler is slower than the VM; every line is still logged, in order,
// however long the host takes to catch up, and no output is reported
// unread: the pipes reached their end, as nothing outside the VM held them.
// The handler takes longer than the drain time over the lines it has read,
// so the drain finds a pipe empty while its reader is still busy.
func testLastWords(t *testing.T) {
	counter := &floodCounter{delay: 200 * time.Microsecond} // the host's slow handler: the fault
	events := vmretest.NewEvents()
	l := newLauncher(t, launcher.Config{Logger: slog.New(counter), Hooks: events.Hooks()})
	rt := mustLaunch(t, l, "lastwords")
	if exit := waitDone(t, rt); !exit.Success() || exit.Stage != launcher.StageNone {
		t.Fatalf("exit = %v; want code 0 on its own", exit)
	}
	if lines, gaps, first := counter.result(); lines != lastWordsLines || gaps != 0 || first != 0 {
		t.Errorf("the host logged %d of the VM's last %d lines (first %d, %d gaps); want all, in order", lines, lastWordsLines, first, gaps)
	}
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.OutputDropInfo); ok && i.Unread {
			t.Errorf("OutputDropped %+v: a pipe that reached its end was reported held open", i)
		}
	}
}

func testInitializeTwice(t *testing.T) {
	l, events := newLauncherWithEvents(t, launcher.Config{})
	rt := mustLaunch(t, l, "twice")
	ev := events.Wait(t, vmretest.EngineCall, func(ev vmretest.Event) bool { return !ev.Info.(launcher.EngineCallInfo).Accepted() })
	if call := ev.Info.(launcher.EngineCallInfo); call.Code() != connect.CodeAlreadyExists || call.Addr != "127.0.0.1:1" {
		t.Errorf("second Initialize %+v; want already_exists", call)
	}
	ping(t, rt.Status().Addr) // the first address stands
	rt.Stop(context.Background())
	if exit := waitDone(t, rt); !exit.Success() {
		t.Errorf("exit = %v; want code 0", exit)
	}
}

// engineToken is the launch token Launch put in the environment of cmd.
func engineToken(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	for _, kv := range cmd.Env {
		if token, ok := strings.CutPrefix(kv, vmre.EngineTokenKey+"="); ok {
			return token
		}
	}
	t.Fatalf("no %s in the VM's environment", vmre.EngineTokenKey)
	return ""
}

// testTokenAfterTimeout: once the handshake has timed out, the launch's
// token is dead. The VM never calls back, however fast it starts.
func testTokenAfterTimeout(t *testing.T) {
	l := newLauncher(t, launcher.Config{HandshakeTimeout: 300 * time.Millisecond})
	cmd := vmretest.Command("never")
	_, err := l.Launch(t.Context(), cmd)
	if !errors.Is(err, vmre.ErrHandshakeTimeout) {
		t.Fatalf("err = %v; want a handshake timeout", err)
	}
	_, err = client.Initialize(t.Context(), "127.0.0.1:40000", client.WithEngine(l.EngineAddr(), engineToken(t, cmd)))
	if connect.CodeOf(err) != connect.CodeNotFound || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Errorf("Initialize after the timeout: %v; want not_found", err)
	}
}

func testTokenAfterEnd(t *testing.T) {
	l := newLauncher(t, launcher.Config{})
	cmd := vmretest.Command("ok")
	rt, err := l.Launch(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	token := engineToken(t, cmd)
	// The token is in the VM's environment, readable by its user only, not
	// on its command line, which every user can read.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(rt.Status().Pid) + "/cmdline")
	if err != nil || bytes.Contains(cmdline, []byte(token)) {
		t.Errorf("the VM's command line %q (%v) holds its token", cmdline, err)
	}
	stolen := client.WithEngine(l.EngineAddr(), token)
	_, err = client.Initialize(t.Context(), "127.0.0.1:40000", stolen)
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("Initialize with the token of a running VM: %v; want already_exists", err)
	}
	rt.Stop(context.Background())
	waitDone(t, rt)
	_, err = client.Initialize(t.Context(), "127.0.0.1:40000", stolen)
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Initialize with the token of a stopped VM: %v; want not_found", err)
	}
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

// await returns the first record whose message is msg, failing the test if
// none comes within vmretest.WaitTimeout. It is for tests whose subject is
// the log output.
func (w *watchedLog) await(t *testing.T, msg string) vmretest.Record {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for {
		next := w.bell.wait()
		if r, ok := w.rec.Find(msg); ok {
			return r
		}
		select {
		case <-next:
		case <-timeout.C:
			t.Fatalf("no record %q within %s", msg, vmretest.WaitTimeout)
		}
	}
}

// ringingHandler rings a bell after each record it passes on.
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
	delay       time.Duration // how long each record takes, to make a slow host
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
	if h.delay > 0 {
		time.Sleep(h.delay)
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
