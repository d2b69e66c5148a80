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
