//go:build unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	openToken := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(openToken, []byte(testToken), 0o644); err != nil {
		t.Fatal(err)
	}
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
		{[]string{"ps", "--node", "http://127.0.0.1:1"}, exitUnavailable, "is it running?"},
		{[]string{"stop"}, exitUsage, "want a NAME"},
		{[]string{"remote"}, exitUsage, "missing a subcommand"},
		{[]string{"run", "--check", exampleVM}, exitOK, "check passed"},
		{[]string{"--version"}, exitOK, "protocol version: "},
		// Bad node flags exit 2 before anything starts.
		{[]string{"node", "--plugin-dir", filepath.Join(t.TempDir(), "missing")}, exitUsage, "--plugin-dir: open "},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--pins", filepath.Join(t.TempDir(), "missing")}, exitUsage, "--pins: open "},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--aliases", filepath.Join(t.TempDir(), "missing")}, exitUsage, "--aliases: open "},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--admin-token-file", openToken, "--strict-token-perms"}, exitUsage,
			"may be read by others (mode -rw-r--r--): chmod 600"},
		{[]string{"ps", "--node", "http://127.0.0.1:1", "--admin-token-file", openToken}, exitUnavailable, "warning: the admin token file"},
		{[]string{"logs", "--tail", "some", "x"}, exitUsage, `--tail "some": give a number of records, or all`},
		{[]string{"logs", "--since", "yesterday", "x"}, exitUsage, "not a duration"},
		{[]string{"stop", "a", "--all"}, exitUsage, "give NAMEs or --all, not both"},
		{[]string{"completion", "tcsh"}, exitUsage, "vmre completes bash, zsh and fish"},
		{[]string{"run", "./no-such-vmre-plugin"}, exitFailure, "no-such-vmre-plugin"},
	} {
		code, stdout, stderr := inProcess(t, run, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.out) {
			t.Errorf("vmre %s: exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", strings.Join(c.args, " "), code, c.code, c.out, stdout, stderr)
		}
	}
}

// TestCompletion: the bash script completes the commands, a command's
// flags, and the VM names of the running node.
func TestCompletion(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	n := startInNode(t, vars, "--plugin-dir", dir)
	n.waitState(t, "alpha", "running", nil)
	code, script, _ := inProcess(t, vars, "completion", "bash")
	if code != exitOK {
		t.Fatalf("completion bash: exit %d", code)
	}
	scriptFile := filepath.Join(t.TempDir(), "vmre.bash")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir() // vmre on PATH, for the names
	if err := os.Symlink(vmreBin, filepath.Join(bin, "vmre")); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		line := "source " + scriptFile + "; COMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + `; _vmre; echo "${COMPREPLY[*]}"`
		cmd := exec.CommandContext(t.Context(), bash, "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "XDG_RUNTIME_DIR="+vars["XDG_RUNTIME_DIR"])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"vmre", "re"}, "restart reload remote"},
		{[]string{"vmre", "logs", "--ti"}, "--timestamps"},
		{[]string{"vmre", "stop", "al"}, "alpha"},
		{[]string{"vmre", "rollback", "al"}, "alpha"},
		{[]string{"vmre", "rollout", "--no-"}, "--no-auto-revert --no-wait"},
	} {
		if got := complete(c.words...); got != c.want {
			t.Errorf("completion of %v: %q; want %q", c.words, got, c.want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		if code, out, _ := inProcess(t, vars, "completion", shell); code != exitOK || !strings.Contains(out, "vmre ps -a -q") {
			t.Errorf("completion %s: exit %d\n%s", shell, code, out)
		}
	}
}
