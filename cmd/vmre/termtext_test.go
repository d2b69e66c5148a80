//go:build unix

package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestLogsEscapedOnATerminal: a VM's line that would set the terminal's
// title and colour reaches a terminal escaped, the bytes visible as
// text; --raw and a pipe get the bytes as they are.
func TestLogsEscapedOnATerminal(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	script := "#!/bin/sh\nprintf '\\033]0;owned\\007title \\033[31mred\\n' >&2\nexec " + exampleVM + "\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "painter"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The script execs a file outside the plugin directory, which the
	// sandbox's default policy refuses: not what this test is about.
	n := startInNode(t, vars, "--plugin-dir", dir, "--sandbox", "off")
	n.waitState(t, "painter", "running", nil)
	logs := func(tty bool, args ...string) string {
		var out, errOut vmretest.SyncBuffer
		e := env2(&out, &errOut, vars)
		e.terminal = func(io.Writer) bool { return tty }
		if code := vmreMain(t.Context(), append([]string{"logs", "painter"}, args...), e); code != exitOK {
			t.Fatalf("logs %q: exit %d\n%s", args, code, errOut.String())
		}
		return out.String()
	}
	const raw, escaped = "\x1b]0;owned\x07title \x1b[31mred", `\x1b]0;owned\atitle \x1b[31mred`
	if out := logs(true); !strings.Contains(out, escaped) || strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("logs on a terminal: %q; want the line as %s and no control byte", out, escaped)
	}
	for _, out := range []string{logs(true, "--raw"), logs(false)} {
		if !strings.Contains(out, raw) {
			t.Errorf("logs --raw or through a pipe: %q; want the line's bytes as they are", out)
		}
	}
}

// TestErrorsEscapedOnATerminal: a VM that writes control bytes and fails
// before its handshake: its error reaches a terminal escaped through
// ps --format and through a failed vmre start, whose message quotes the
// VM's last lines (their line breaks kept); through a pipe as it is.
func TestErrorsEscapedOnATerminal(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	script := "#!/bin/sh\nprintf '\\033[2Jcleared\\n' >&2\nexit 1\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "wiper"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n := startInNode(t, vars, "--plugin-dir", dir)
	n.waitState(t, "wiper", "failed", nil)
	run := func(tty bool, args ...string) (code int, stdout, stderr string) {
		var out, errOut vmretest.SyncBuffer
		e := env2(&out, &errOut, vars)
		e.terminal = func(io.Writer) bool { return tty }
		code = vmreMain(t.Context(), args, e)
		return code, out.String(), errOut.String()
	}
	const raw, escaped = "stderr: \x1b[2Jcleared", `stderr: \x1b[2Jcleared`
	if _, out, _ := run(true, "ps", "-a", "--format", "{{.Error}}"); !strings.Contains(out, escaped) || strings.Contains(out, "\x1b") {
		t.Errorf("ps --format {{.Error}} on a terminal: %q; want %s and no control byte", out, escaped)
	}
	if _, out, _ := run(false, "ps", "-a", "--format", "{{.Error}}"); !strings.Contains(out, raw) {
		t.Errorf("ps --format {{.Error}} through a pipe: %q; want the bytes as they are", out)
	}
	code, _, errOut := run(true, "start", "wiper")
	if code != exitFailure || !strings.Contains(errOut, "\n\t"+escaped) || strings.Contains(errOut, "\x1b") {
		t.Errorf("start of a failing VM on a terminal: exit %d %q; want exit %d, the VM's line escaped on a line of its own", code, errOut, exitFailure)
	}
}
