//go:build unix

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
)

// TestRolloutCommands runs `vmre node` on a directory of one example VM,
// and its operators' commands in process: a good version rolls out, a bad
// one (exits 1 at start) is rolled back by itself and refused when rolled
// out again, ps and history show it, rollback goes back to the first
// version, and the events and metrics tell each rollout.
func TestRolloutCommands(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alpha")
	copyFile(t, exampleVM, path, 0o755)
	v1 := sha256File(t, path)
	p := startVMRE(t, "node", "--plugin-dir", dir, "--data-dir", t.TempDir(), "--restart", "on-failure", "--log-format", "json",
		"--events", "-", "--min-healthy", "300ms", "--health-probe-interval", "50ms")
	mux := parseRecord(p.stdout.waitFor(t, "listening", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	p.stdout.waitFor(t, "alpha running", 20*time.Second, isState("alpha", "running", nil))
	env := map[string]string{"XDG_RUNTIME_DIR": t.TempDir(), "NO_COLOR": "1"}
	vmre := func(args ...string) (int, string, string) {
		t.Helper()
		return inProcess(t, env, append(args[:1:1], append([]string{"--node", "http://" + mux}, args[1:]...)...)...)
	}
	writePlugin := func(data []byte) string {
		t.Helper()
		if err := vmretest.WriteExecutable(path+".new", data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		return sha256File(t, path)
	}
	example, err := os.ReadFile(exampleVM)
	if err != nil {
		t.Fatal(err)
	}

	// A good version.
	v2 := writePlugin(append(example, "version 2"...))
	code, out, errOut := vmre("rollout", "alpha")
	if code != exitOK || !strings.Contains(out, "rolled out alpha to "+v2[:12]) || !strings.Contains(out, "answers its health probe") {
		t.Fatalf("rollout of a good version: exit %d\n%s%s", code, out, errOut)
	}
	healthy := parseRecord(p.stdout.waitFor(t, "rollout_healthy", 20*time.Second, isEvent("rollout_healthy", nil)))
	if healthy["from"] != v1 || healthy["to"] != v2 || healthy["strategy"] != "replace" || healthy["vm"] != "alpha" {
		t.Errorf("the rollout_healthy event: %v", healthy)
	}

	// A bad one: rolled back by itself, not rolled out again.
	bad := writePlugin([]byte("#!/bin/sh\necho 'fatal: cannot open the chain database' >&2\nexit 1\n"))
	code, out, errOut = vmre("rollout", "alpha")
	if code != exitFailure || !strings.Contains(out, "rolled back: "+bad[:12]+" failed") ||
		!strings.Contains(out, "cannot open the chain database") || !strings.Contains(out, "alpha runs "+v2[:12]+" again") {
		t.Fatalf("rollout of a bad version: exit %d\n%s%s", code, out, errOut)
	}
	reverted := parseRecord(p.stdout.waitFor(t, "rollout_reverted", 20*time.Second, isEvent("rollout_reverted", nil)))
	if reverted["to"] != bad || !strings.Contains(reverted["error"].(string), "before its handshake") {
		t.Errorf("the rollout_reverted event: %v", reverted)
	}
	code, out, errOut = vmre("rollout", "alpha")
	if code != exitFailure || !strings.Contains(errOut, "it is not rolled out again unless forced") ||
		!strings.Contains(errOut, "vmre rollout alpha --force") {
		t.Errorf("rollout of the bad version again: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := vmre("ps"); code != exitOK || !strings.Contains(out, "running (rolled back from "+bad[:12]+")") {
		t.Errorf("ps after the revert: exit %d\n%s", code, out)
	}
	if code, out, _ := vmre("ps", "--format", "{{.Name}}: {{.Rollout}}"); code != exitOK || out != "alpha: rolled back from "+bad[:12]+"\n" {
		t.Errorf("ps --format .Rollout after the revert: exit %d\n%s", code, out)
	}

	// The history, as text and JSON.
	code, out, _ = vmre("history", "alpha")
	if code != exitOK {
		t.Fatalf("history: exit %d", code)
	}
	want := map[string]string{v2[:12]: "running", bad[:12]: "rolled back: exit code 1", v1[:12]: "superseded"}
	for digest, result := range want {
		if !strings.Contains(out, digest) || !containsLine(out, digest, result) {
			t.Errorf("history lacks %s %s:\n%s", digest, result, out)
		}
	}
	code, out, _ = vmre("history", "--json", "alpha")
	var h struct {
		Versions []struct {
			Digest, Result string
			Kept           bool
		}
	}
	if err := json.Unmarshal([]byte(out), &h); code != exitOK || err != nil || len(h.Versions) != 3 || h.Versions[0].Result != "VERSION_RESULT_ROLLED_BACK" {
		t.Errorf("history --json: exit %d, %v\n%s", code, err, out)
	}

	// Back to the first version.
	code, out, errOut = vmre("rollback", "--to", v1[:8], "alpha")
	if code != exitOK || !strings.Contains(out, "rolled back alpha to "+v1[:12]) {
		t.Errorf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	metrics := getBody(t, "http://"+mux+"/metrics")
	for _, want := range []string{`vmre_rollouts_total{result="succeeded",vm="alpha"} 2`, `vmre_rollouts_total{result="reverted",vm="alpha"} 1`,
		`vmre_vm_version_info{digest="` + v1 + `",vm="alpha"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Errors.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rollout", "nope"}, exitNotFound, `"nope"`},
		{[]string{"rollback", "--to", "ffff", "alpha"}, exitNotFound, "no version ffff"},
		{[]string{"rollback", "--to", bad[:8], "alpha"}, exitFailure, "--force rolls back to it all the same"},
	} {
		if code, out, errOut := vmre(c.args...); code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("vmre %s: exit %d, want %d with %q\n%s%s", strings.Join(c.args, " "), code, c.code, c.want, out, errOut)
		}
	}
	if code := p.signal(t, syscall.SIGINT, 30*time.Second); code != exitOK {
		t.Fatalf("exit %d after SIGINT\nstderr:\n%s", code, p.stderr)
	}
}

// containsLine reports whether a line of out holds both a and b.
func containsLine(out, a, b string) bool {
	for line := range strings.Lines(out) {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}

// TestRolloutUsage: the rollout flags' usage errors.
func TestRolloutUsage(t *testing.T) {
	t.Parallel()
	env := map[string]string{"XDG_RUNTIME_DIR": t.TempDir(), "NO_COLOR": "1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout"}, "want one NAME"},
		{[]string{"rollout", "--min-healthy", "-1s", "x"}, "give a positive duration"},
		{[]string{"rollout", "--strategy", "canary", "x"}, "replace or start-first"},
		{[]string{"rollback", "a", "b"}, "want one NAME"},
		{[]string{"history"}, "want one NAME"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--keep-versions", "0"}, "keep at least 1 version"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--rollout-strategy", "canary"}, "replace or start-first"},
		{[]string{"node", "--plugin-dir", t.TempDir(), "--min-healthy", "0s"}, "--min-healthy 0s"},
	} {
		if code, out, errOut := inProcess(t, env, c.args...); code != exitUsage || !strings.Contains(out+errOut, c.want) {
			t.Errorf("vmre %s: exit %d, want 2 with %q\n%s%s", strings.Join(c.args, " "), code, c.want, out, errOut)
		}
	}
	if code, out, _ := inProcess(t, env, "help", "rollout"); code != exitOK || !strings.Contains(out, "--no-auto-revert") {
		t.Errorf("help rollout: exit %d\n%s", code, out)
	}
}

// TestRolloutStateInPs: ps's STATE adds a VM's rollout to its state, in
// progress or ended without success, and colours it on a terminal: yellow
// while it rolls out, red once it failed or was rolled back; a rollout
// that succeeded adds nothing.
func TestRolloutStateInPs(t *testing.T) {
	t.Parallel()
	const from, to = "9d0eaedb0154350d3476b646b301eed5", "269350a7d70c332955822bb96f52313f"
	const green, red, yellow = "\x1b[32m", "\x1b[31m", "\x1b[33m"
	rollout := func(p adminv1.RolloutPhase) *adminv1.Rollout {
		return &adminv1.Rollout{Phase: p, FromDigest: from, ToDigest: to}
	}
	for _, c := range []struct {
		vm          *adminv1.VM
		state, want string
	}{
		{&adminv1.VM{State: adminv1.VMState_VM_STATE_RUNNING, Rollout: rollout(adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_OUT)},
			"running (rolling out 269350a7d70c)", yellow},
		{&adminv1.VM{State: adminv1.VMState_VM_STATE_RUNNING, Rollout: rollout(adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLED_BACK)},
			"running (rolled back from 269350a7d70c)", red},
		{&adminv1.VM{State: adminv1.VMState_VM_STATE_CRASHLOOP, Rollout: rollout(adminv1.RolloutPhase_ROLLOUT_PHASE_FAILED)},
			"crashloop (rollout of 269350a7d70c failed)", red},
		{&adminv1.VM{State: adminv1.VMState_VM_STATE_RUNNING, Rollout: rollout(adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED)},
			"running", green},
		{&adminv1.VM{State: adminv1.VMState_VM_STATE_RUNNING, Pending: "changed: rolls out 269350a7d70c at its next start",
			Rollout: rollout(adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLED_BACK)},
			"running (changed: rolls out 269350a7d70c at its next start, rolled back from 269350a7d70c)", red},
	} {
		state := psState(newPsRow(c.vm))
		if state != c.state {
			t.Errorf("STATE %q, want %q", state, c.state)
		}
		if got := colorState(state); got != c.want+c.state+"\x1b[0m" {
			t.Errorf("STATE %q coloured %q, want it in %q", state, got, c.want)
		}
	}
}

// TestRolloutByAlias: vmre rollout and rollback take an alias, as ps
// shows it, and follow the rollout to its end under the VM's name.
func TestRolloutByAlias(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "alpha")
	copyFile(t, exampleVM, path, 0o755)
	aliases := filepath.Join(t.TempDir(), "aliases.json")
	if err := os.WriteFile(aliases, []byte(`{"alpha": ["chain"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startInNode(t, vars, "--plugin-dir", dir, "--aliases", aliases, "--data-dir", t.TempDir(),
		"--min-healthy", "200ms", "--health-probe-interval", "50ms")
	n.waitState(t, "alpha", "running", nil)
	example, err := os.ReadFile(exampleVM)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmretest.WriteExecutable(path+".new", append(example, "version 2"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	v2 := sha256File(t, path)
	// A follower that missed its VM would wait for ever: the test's
	// deadline ends it, and the exit says so.
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	var out, errOut vmretest.SyncBuffer
	code := vmreMain(ctx, []string{"rollout", "chain"}, env2(&out, &errOut, vars))
	if code != exitOK || !strings.Contains(out.String(), "rolled out alpha to "+v2[:12]) {
		t.Errorf("vmre rollout chain: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
