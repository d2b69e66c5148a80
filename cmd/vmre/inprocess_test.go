//go:build unix

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
)

// inProcess runs vmre's main function in the test's process, with args
// and an environment of its own, so that its coverage is measured.
func inProcess(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut vmretest.SyncBuffer
	getenv := func(k string) string { return env[k] }
	code = vmreMain(context.Background(), args, envOf(&out, &errOut, getenv))
	return code, out.String(), errOut.String()
}

func envOf(stdout, stderr *vmretest.SyncBuffer, getenv func(string) string) env {
	return env{stdout: stdout, stderr: stderr, getenv: getenv}
}

// TestMainInProcess: the commands' help, usage errors and exit codes, and
// a whole run --check of the example VM, through vmreMain.
func TestMainInProcess(t *testing.T) {
	run := map[string]string{"XDG_RUNTIME_DIR": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "NO_COLOR": "1"}
	badPolicy := filepath.Join(t.TempDir(), "sandbox.json")
	if err := os.WriteFile(badPolicy, []byte(`{"default": {"files": {"reed": []}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		out  string // in stdout, or stderr for a usage error
	}{
		{[]string{"--help"}, exitOK, "vmre node --plugin-dir"},
		{nil, exitUsage, "Commands:"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"help", "node"}, exitOK, "--keep-removed"},
		{[]string{"version"}, exitOK, "protocol"},
		{[]string{"node"}, exitUsage, "missing --plugin-dir"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--require-pins"}, exitUsage, "--require-pins needs --pins"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--log-backlog-kib", "0"}, exitUsage, "--log-backlog-kib 0: give a size"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--listen", "0.0.0.0:0"}, exitUsage, "--admin-token-file"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--sandbox", "strict"}, exitUsage, `--sandbox "strict": give off, best-effort or required`},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--sandbox-policy", badPolicy}, exitUsage, `default.files: unknown key "reed"`},
		{[]string{"run"}, exitUsage, "missing PLUGIN"},
		{[]string{"run", "--check", "--restart", "always", exampleVM}, exitUsage, "--check stops the VM"},
		{[]string{"ps", "--node", "http://127.0.0.1:1"}, exitFailure, "is the node running?"},
		{[]string{"stop"}, exitUsage, "want one NAME"},
		{[]string{"remote"}, exitUsage, "missing a subcommand"},
		{[]string{"run", "--check", exampleVM}, exitOK, "check passed"},
		{[]string{"run", "./no-such-vmre-plugin"}, exitFailure, "no-such-vmre-plugin"},
	} {
		code, stdout, stderr := inProcess(t, run, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.out) {
			t.Errorf("vmre %s: exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", strings.Join(c.args, " "), code, c.code, c.out, stdout, stderr)
		}
	}
}
