//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/sandbox"
)

// requireSandbox skips a test that needs Landlock on a kernel without it, and fails
// it under CI=true.
func requireSandbox(t *testing.T) { vmretest.RequireLandlock(t, "the sandbox's rules") }

// doctor --sandbox launches a VM under its policy and lists what the
// sandbox refused it, with the policy that grants it; granted, it is
// refused no more. Here the VM is a script that reads a staking key in a
// home directory, then execs the example VM, whose directory its policy
// grants.
func TestDoctorSandbox(t *testing.T) {
	requireSandbox(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatal("strace is not installed; the README asks for it: apt-get install -y strace")
	}
	t.Parallel()
	key := filepath.Join(t.TempDir(), ".avalanchego", "staking", "staker.key")
	if err := os.MkdirAll(filepath.Dir(key), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	vm := writeScript(t, "reader", "/bin/cat "+key+" >/dev/null\nexec "+exampleVM+" \"$@\"\n")
	policy := func(read ...string) string {
		path := filepath.Join(t.TempDir(), "sandbox.json")
		b := `{"vms": {"reader": {"files": {"read": ["` + strings.Join(read, `", "`) + `"]}}}}`
		if err := os.WriteFile(path, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	r := runVMRE(t, 60*time.Second, "doctor", "--sandbox", "--sandbox-policy", policy(filepath.Dir(exampleVM)), vm)
	if r.code != exitOK {
		t.Fatalf("doctor --sandbox: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"  ok    sandbox    -         best-effort, ",
		"  WARN  denied     -         the sandbox refused the VM ",
		"| openat " + key + ": EACCES; grant: files.read " + key + "\n",
		`fix:   grant what the VM needs in the policy file (vmre node --sandbox-policy, or --sandbox-policy here): {"vms":{"reader":{"files":{"read":["` + key + `"]}}}}`,
		"verdict: healthy",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("doctor --sandbox does not say %q:\n%s", want, r.stdout)
		}
	}

	// Granted, the key is read.
	r = runVMRE(t, 60*time.Second, "doctor", "--sandbox", "--sandbox-policy", policy(filepath.Dir(exampleVM), key), vm)
	if r.code != exitOK || strings.Contains(r.stdout, key+": EACCES") || !strings.Contains(r.stdout, "  ok    denied ") {
		t.Errorf("doctor --sandbox with the key granted: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// Without its directory, the example VM cannot be exec'd: the VM
	// fails, and doctor says what the sandbox refused it.
	r = runVMRE(t, 60*time.Second, "doctor", "--sandbox", vm)
	for _, want := range []string{"| execve " + exampleVM + ": EACCES; grant: files.read " + exampleVM,
		"the sandbox refused the VM calls it made: see denied (exit code 5)"} {
		if r.code != exitVMExited || !strings.Contains(r.stdout, want) {
			t.Errorf("doctor --sandbox of a VM refused its exec: exit %d, want %d saying %q\n%s", r.code, exitVMExited, want, r.stdout)
		}
	}
}

// Without strace, doctor --sandbox still runs the VM under its policy, and
// says that it cannot list what the sandbox refused, and what to do.
func TestDoctorSandboxWithoutStrace(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	env := append(testEnv(), "PATH=/nonexistent")
	r := runVMREEnv(t, env, 60*time.Second, "doctor", "--sandbox", exampleVM)
	for _, want := range []string{"  ok    sandbox    -         best-effort, full, ",
		"  skip  denied     -         strace is not installed", "fix:   install strace", "verdict: healthy"} {
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("doctor --sandbox without strace: exit %d, want it saying %q\n%s\n%s", r.code, want, r.stdout, r.stderr)
		}
	}
}

// --sandbox-policy needs --sandbox, and a policy file that parses.
func TestDoctorSandboxUsage(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "sandbox.json")
	if err := os.WriteFile(bad, []byte(`{"default": {"files": {"reed": []}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"doctor", "--sandbox-policy", bad, exampleVM}, "--sandbox-policy needs --sandbox"},
		{[]string{"doctor", "--sandbox", "--sandbox-policy", bad, exampleVM}, `unknown key "reed"`},
	} {
		r := runVMRE(t, 30*time.Second, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("vmre %s: exit %d, want %d saying %q\n%s", strings.Join(tc.args, " "), r.code, exitUsage, tc.want, r.stderr)
		}
	}
}

// run --sandbox runs the VM under its policy, as node does, and the
// launch's record says what the sandbox applied; a level that is none is a
// usage error.
func TestRunSandbox(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	r := runVMRE(t, 60*time.Second, "run", "--check", "--sandbox", "required", "--log-format", "json", exampleVM)
	if r.code != exitOK {
		t.Fatalf("run --check --sandbox required: exit %d\n%s", r.code, r.stderr)
	}
	rec := findRecord(t, r.stderr, "sandbox")
	if rec["vm"] != "examplevm" || rec["sandbox"] != "required" || rec["state"] != "full" {
		t.Errorf("run's sandbox record: %v; want examplevm, required, full", rec)
	}
	if runtime.GOARCH == "amd64" && rec["method"] != sandbox.MethodPtrace {
		t.Errorf("run's sandbox record: method %v, want %s", rec["method"], sandbox.MethodPtrace)
	}
	if r := runVMRE(t, 30*time.Second, "run", "--sandbox", "strict", exampleVM); r.code != exitUsage ||
		!strings.Contains(r.stderr, `--sandbox "strict": give off, best-effort or required`) {
		t.Errorf("run --sandbox strict: exit %d\n%s", r.code, r.stderr)
	}
}
