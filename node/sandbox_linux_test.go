package node_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// requireLandlock skips a test that needs Landlock on a kernel without it,
// saying so, and fails it under CI=true, whose kernel has it.
func requireLandlock(t *testing.T) {
	t.Helper()
	if sandbox.LandlockABI() > 0 {
		return
	}
	const why = "this kernel has no Landlock: the node's sandbox cannot be tested"
	if os.Getenv("CI") == "true" {
		t.Fatal(why + "; CI's kernel must have it")
	}
	t.Skip(why)
}

// A sandboxed node runs each VM through the init step with its policy from
// the policy file, in a data directory of its own, and keeps the report;
// under Required, a VM whose policy the kernel cannot apply fails at once,
// with the missing feature named, and is not retried.
func TestNodeSandbox(t *testing.T) {
	requireLandlock(t)
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"examplevm", "exigent"} {
		b, err := os.ReadFile(exampleVM)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kernel := sandbox.LandlockABI()
	policies, err := sandbox.ParseFile([]byte(`{"vms": {"exigent": {"landlock_abi": ` + strconv.Itoa(kernel+1) + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure,
		Sandbox: sandbox.Required, SandboxPolicy: policies})

	ran := tn.states.wait(t, "examplevm", supervise.StateRunning, nil)
	report, ok := tn.n.SandboxReport("examplevm")
	if !ok || report.State() != sandbox.StateFull || report.Level != sandbox.Required {
		t.Errorf("examplevm's report: %v, %v; want the whole policy applied", report, ok)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(ran.Pid) + "/status")
	if err != nil || !strings.Contains(string(status), "NoNewPrivs:\t1") {
		t.Errorf("examplevm runs without no_new_privs: %v\n%s", err, status)
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(ran.Pid) + "/environ")
	want := vmre.DataDirKey + "=" + filepath.Join(data, "vms", "examplevm", "data")
	if err != nil || !strings.Contains(string(environ), want+"\x00") {
		t.Errorf("examplevm's environment lacks %s: %v", want, err)
	}

	failed := tn.states.wait(t, "exigent", supervise.StateFailed, nil)
	if failed.Err == nil || !strings.Contains(failed.Err.Error(), "Landlock ABI "+strconv.Itoa(kernel+1)) || failed.Launches != 1 {
		t.Errorf("exigent: %+v; want it failed once, naming Landlock ABI %d", failed, kernel+1)
	}
	if _, ok := tn.n.SandboxReport("exigent"); ok {
		t.Error("exigent has a report: its init step never ran")
	}
}
