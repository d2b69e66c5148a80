//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

func init() {
	// talker: a VM that prints "line 1" to "line N" on stdout once it
	// serves (N its first argument, 20 by default), then three more lines
	// at each SIGUSR1, until stopped.
	helpers["talker"] = func(args []string) int {
		n := 20
		if len(args) > 0 {
			fmt.Sscan(args[0], &n)
		}
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		talk := func(client.Ready) {
			go func() {
				for i := 1; i <= n; i++ {
					fmt.Printf("line %d\n", i)
				}
				for range usr1 {
					for range 3 {
						n++
						fmt.Printf("line %d\n", n)
					}
				}
			}()
		}
		err := client.Serve(context.Background(), http.NewServeMux(),
			client.WithLogger(slog.New(slog.DiscardHandler)), client.WithOnReady(talk))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
}

// helperPlugin writes a plugin into dir that runs the test binary as the
// helper mode, with args.
func helperPlugin(t *testing.T, dir, name, mode string, args ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	quoted := ""
	for _, a := range args {
		quoted += " '" + a + "'"
	}
	path := filepath.Join(dir, name)
	script := "#!/bin/sh\n" + vmretest.ModeKey + "=" + mode + " exec '" + self + "'" + quoted + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientEnv is the environment of in-process commands: a runtime
// directory of the test's own, where its nodes leave their files and its
// clients find them, and no colours.
func clientEnv(t *testing.T) map[string]string {
	return map[string]string{"XDG_RUNTIME_DIR": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "NO_COLOR": "1"}
}

// inNode is `vmre node` run by vmreMain in the test's process.
type inNode struct {
	addr   string
	events *lines // --events -
	stderr *vmretest.SyncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	code   int
	ended  time.Time // when vmreMain returned
}

// startInNode runs `vmre node ARGS` in the test's process with env, and
// waits until it listens; the test's cleanup stops it.
func startInNode(t *testing.T, env map[string]string, args ...string) *inNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	n := &inNode{events: newLines(), stderr: &vmretest.SyncBuffer{}, cancel: cancel, done: make(chan struct{})}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		n.events.readFrom(pr)
	}()
	args = append([]string{"node", "--data-dir", t.TempDir(), "--log-format", "json", "--events", "-"}, args...)
	go func() {
		defer close(n.done)
		n.code = vmreMain(ctx, args, env2(pw, n.stderr, env))
		n.ended = time.Now()
		pw.Close()
		<-readDone
	}()
	t.Cleanup(func() { n.stop(t) })
	select {
	case <-n.done:
		t.Fatalf("vmre node exited %d before it listened:\n%s", n.code, n.stderr)
	default:
	}
	n.addr = parseRecord(n.events.waitFor(t, "listening", vmretest.WaitTimeout, isEvent("listening", nil)))["addr"].(string)
	n.events.waitFor(t, "serving", vmretest.WaitTimeout, isEvent("serving", nil)) // its discovery file is there
	return n
}

// env2 is the env of an in-process command writing to stdout and stderr.
func env2(stdout, stderr io.Writer, vars map[string]string) env {
	return env{stdout: stdout, stderr: stderr, getenv: func(k string) string { return vars[k] }}
}

// waitState waits for the state event of vm in state.
func (n *inNode) waitState(t *testing.T, vm, state string, cond func(record) bool) record {
	t.Helper()
	return parseRecord(n.events.waitFor(t, vm+" "+state, vmretest.WaitTimeout, isState(vm, state, cond)))
}

// stop stops the node as Ctrl-C does and returns its exit code; it may be
// called again.
func (n *inNode) stop(t *testing.T) int {
	t.Helper()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(cleanupGrace):
		t.Fatalf("vmre node did not stop within %s:\n%s", cleanupGrace, n.stderr)
	}
	return n.code
}

// inCLI is a client command run by vmreMain in the test's process, that
// runs until it ends or is interrupted (logs -f, events).
type inCLI struct {
	out    *lines
	stderr *vmretest.SyncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	code   int
	ended  time.Time
}

func startCLI(t *testing.T, vars map[string]string, args ...string) *inCLI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	c := &inCLI{out: newLines(), stderr: &vmretest.SyncBuffer{}, cancel: cancel, done: make(chan struct{})}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.out.readFrom(pr)
	}()
	go func() {
		defer close(c.done)
		c.code = vmreMain(ctx, args, env2(pw, c.stderr, vars))
		c.ended = time.Now()
		pw.Close()
		<-readDone
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	return c
}

// wait waits for the command's end and returns its exit code.
func (c *inCLI) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
		return c.code
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("the command did not end within %s; stderr:\n%s", vmretest.WaitTimeout, c.stderr)
		return -1
	}
}

// records are the lines of logs' output that are records: not the run
// boundaries and notes, which start "--".
func records(out string) []string {
	var recs []string
	for line := range strings.Lines(out) {
		if line = strings.TrimRight(line, "\n"); line != "" && !strings.HasPrefix(line, "--") {
			recs = append(recs, line)
		}
	}
	return recs
}
