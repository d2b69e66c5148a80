//go:build unix

package main

import (
	"context"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// inVars is the environment of a vmre run in the test's process: a runtime
// and a state directory of its own (where a node leaves its discovery file
// and keeps its data), plain logs, and the variables of extra.
func inVars(t *testing.T, extra map[string]string) map[string]string {
	vars := map[string]string{"XDG_RUNTIME_DIR": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "NO_COLOR": "1"}
	maps.Copy(vars, extra)
	return vars
}

// runInProcess runs vmre with args to its end through vmreMain in the
// test's process, as runVMRE runs the built binary, so that its coverage
// is measured; timeout ends it as a first Ctrl-C would, and fails the
// test.
func runInProcess(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	return runInProcessEnv(t, inVars(t, nil), timeout, args...)
}

func runInProcessEnv(t *testing.T, vars map[string]string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stdout, stderr vmretest.SyncBuffer
	start := time.Now()
	code := vmreMain(ctx, args, env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }})
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("vmre %s: still running after %s\nstderr:\n%s", strings.Join(args, " "), timeout, r.stderr)
	}
	return r
}

// inProc is a long-running vmre command (node, run) in the test's process:
// its stdout (the events of --events -) is collected line by line as it
// comes, and its stderr whole.
type inProc struct {
	vars   map[string]string
	stdout *lines
	stderr vmretest.SyncBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed once vmreMain has returned and stdout is read
	code   int           // valid after done
}

// startInProcess runs vmre with args through vmreMain in the test's
// process until stop or the end of the test.
func startInProcess(t *testing.T, vars map[string]string, args ...string) *inProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProc{vars: vars, stdout: newLines(), cancel: cancel, done: make(chan struct{})}
	pr, pw := io.Pipe()
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.stdout.readFrom(pr)
	}()
	go func() {
		defer close(p.done)
		p.code = vmreMain(ctx, args, env{stdout: pw, stderr: &p.stderr, getenv: func(k string) string { return vars[k] }})
		pw.Close()
		<-read
	}()
	t.Cleanup(func() {
		if code := p.stop(t); code != exitOK && !t.Failed() {
			t.Errorf("vmre %s: exit %d after its context ended; want 0\nstderr:\n%s", strings.Join(args, " "), code, p.stderr.String())
		}
	})
	return p
}

// stop ends the command as a first Ctrl-C would, and returns its exit
// code once it has returned.
func (p *inProc) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(cleanupGrace):
		t.Fatalf("vmre did not return within %s of its context's end\nstderr:\n%s", cleanupGrace, p.stderr.String())
	}
	return p.code
}

// client runs a client command (ps, stop, ...) in the test's process
// against the node of p, with p's environment.
func (p *inProc) client(t *testing.T, args ...string) result {
	t.Helper()
	return runInProcessEnv(t, p.vars, 60*time.Second, args...)
}
