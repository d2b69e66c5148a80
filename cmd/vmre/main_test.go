//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"go.uber.org/goleak"
)

// The binaries under test, built once by TestMain, and the directory the
// nodes under test leave their address in.
var (
	binDir    string
	vmreBin   string
	exampleVM string
	grpcurl   string
	runDir    string
)

// helpers are the test binary's lives as a helper process, by mode.
var helpers = map[string]vmretest.Helper{}

func TestMain(m *testing.M) {
	if os.Getenv(vmretest.ModeKey) != "" {
		vmretest.Main(m, helpers) // the test binary as a helper process: it exits
	}
	dir, err := os.MkdirTemp("", "vmre-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, vmreBin, exampleVM = dir, filepath.Join(dir, "vmre"), filepath.Join(dir, "examplevm")
	grpcurl, runDir = filepath.Join(dir, "grpcurl"), filepath.Join(dir, "run")
	err = build(vmreBin, "github.com/vmre/vmre/cmd/vmre", raceEnabled)
	if err == nil {
		err = build(exampleVM, "github.com/vmre/vmre/cmd/examplevm", false)
	}
	if err == nil {
		err = buildTool(grpcurl, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	vmretest.Main(m, nil, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// build builds pkg into out, with the race detector when race is set, so
// that the CLI's own goroutines are checked as the tests drive it.
func build(out, pkg string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// buildTool builds a tool of tools/go.mod into out.
func buildTool(out, pkg string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-modfile="+filepath.Join(root, "tools", "go.mod"), "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// testEnv is the environment of the processes under test: plain text
// logs, no race-detector pause at exit (a -race binary otherwise waits a
// second before exiting 0), and an XDG_RUNTIME_DIR of the tests' own, where
// the nodes under test leave their address for the clients.
func testEnv() []string {
	return append(os.Environ(), "NO_COLOR=1", "GORACE=atexit_sleep_ms=0", "XDG_RUNTIME_DIR="+runDir)
}

// result is how a finished vmre ran.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// runVMRE runs vmre with args to its end, or kills it after timeout.
func runVMRE(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	return runVMREEnv(t, testEnv(), timeout, args...)
}

// runVMREEnv runs vmre with args in env to its end, or kills it after
// timeout.
func runVMREEnv(t *testing.T, env []string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmreBin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vmre %s: still running after %s\nstderr:\n%s", strings.Join(args, " "), timeout, r.stderr)
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("vmre %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// proc is a long-running process under test, with its output collected
// line by line as it comes.
type proc struct {
	cmd    *exec.Cmd
	stdout *lines
	stderr *lines
	done   chan struct{} // closed once the process is reaped
	code   int           // valid after done
}

// startProc starts a process; the test's cleanup stops it if it still runs.
func startProc(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); p.stdout.readFrom(outPipe) }()
	go func() { defer readers.Done(); p.stderr.readFrom(errPipe) }()
	go func() {
		defer close(p.done)
		readers.Wait() // Wait closes the pipes: read them to their end first
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		// SIGTERM first: a vmre stops its VMs, which live in process
		// groups of their own and would outlive a SIGKILLed vmre.
		select {
		case <-p.done:
			return
		default:
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.done:
		case <-time.After(cleanupGrace):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// cleanupGrace is how long a test's cleanup lets a process it started
// exit on SIGTERM before it kills it: beyond the graceful timeout of a
// vmre's VMs.
const cleanupGrace = 30 * time.Second

func startVMRE(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProc(t, testEnv(), vmreBin, args...)
}

// signal sends sig and waits for the process to exit, failing after timeout.
func (p *proc) signal(t *testing.T, sig syscall.Signal, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return p.wait(t, timeout)
}

func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s\nstderr:\n%s", p.cmd.Path, timeout, p.stderr.String())
		return -1
	}
}

// lines collects the lines of a stream and lets a test wait for one.
type lines struct {
	mu      sync.Mutex
	all     []string
	eof     bool
	changed chan struct{} // closed and replaced on every new line and at EOF
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) readFrom(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
	io.Copy(io.Discard, r)
	l.mu.Lock()
	l.eof = true
	close(l.changed)
	l.mu.Unlock()
}

// waitFor returns the first line for which match is true, waiting for it
// until the stream ends or timeout passes.
func (l *lines) waitFor(t *testing.T, what string, timeout time.Duration, match func(string) bool) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for next := 0; ; {
		l.mu.Lock()
		for ; next < len(l.all); next++ {
			if match(l.all[next]) {
				line := l.all[next]
				l.mu.Unlock()
				return line
			}
		}
		eof, changed := l.eof, l.changed
		l.mu.Unlock()
		if eof {
			t.Fatalf("the stream ended without %s; it had:\n%s", what, l.String())
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %s; the stream had:\n%s", what, timeout, l.String())
		}
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func (l *lines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// record is one JSON log record.
type record map[string]any

// parseRecord parses a JSON log line, or returns nil.
func parseRecord(line string) record {
	var r record
	if json.Unmarshal([]byte(line), &r) != nil {
		return nil
	}
	return r
}

// hostRecord matches vmre's own records (not the VM's lines) with msg.
func hostRecord(msg string) func(string) bool {
	return func(line string) bool {
		r := parseRecord(line)
		_, fromVM := r["stream"]
		return r != nil && r["msg"] == msg && !fromVM
	}
}

// findRecord returns the first of vmre's own records with msg in a whole
// JSON log.
func findRecord(t *testing.T, log, msg string) record {
	t.Helper()
	match := hostRecord(msg)
	for line := range strings.Lines(log) {
		if match(line) {
			return parseRecord(line)
		}
	}
	t.Fatalf("no record %q in:\n%s", msg, log)
	return nil
}

// writeScript writes an executable shell script into a test's temp dir.
func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	return writeExecutable(t, name, "#!/bin/sh\n"+body)
}

// writeExecutable writes an executable file of content in a temporary
// directory and returns its path.
func writeExecutable(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := vmretest.WriteExecutable(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// needCurl returns the path of curl. Its absence fails the test, as in
// package server: a machine without curl must not pass by skipping.
func needCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed; the README asks for it: apt-get install -y curl")
	}
	return path
}

// eventsFIFO makes a named pipe for --events and collects the events that
// vmre writes to it, line by line. The test holds the pipe open for
// writing too, so that vmre's open never blocks and the reader never sees
// an end of file: it waits for events, and cleanup stops it.
func eventsFIFO(t *testing.T) (string, *lines) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := newLines()
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.readFrom(f)
	}()
	t.Cleanup(func() {
		f.Close()
		<-done
	})
	return path, l
}

// isEvent matches the --events line of event name for which cond (when
// not nil) holds.
func isEvent(name string, cond func(record) bool) func(string) bool {
	return func(line string) bool {
		r := parseRecord(line)
		return r != nil && r["event"] == name && (cond == nil || cond(r))
	}
}

// findEvent returns the first event name in a whole --events stream.
func findEvent(t *testing.T, stream, name string) record {
	t.Helper()
	match := isEvent(name, nil)
	for line := range strings.Lines(stream) {
		if match(line) {
			return parseRecord(line)
		}
	}
	t.Fatalf("no event %q in:\n%s", name, stream)
	return nil
}

// pidGone reports whether no process has the pid any more.
func pidGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
