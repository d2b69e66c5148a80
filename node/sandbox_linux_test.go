package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// requireLandlock skips a test that needs Landlock on a kernel without it, and fails
// it under CI=true.
func requireLandlock(t *testing.T) { vmretest.RequireLandlock(t, "the node's sandbox") }

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
	if want := sandbox.MethodPtrace; ok && runtime.GOARCH == "amd64" && report.Method != want {
		t.Errorf("examplevm's policy was applied by %s, want %s: the node starts its VMs with sandbox.Start", report.Method, want)
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

// The sandbox's report of each VM shows in every view of it: the admin
// API (ListVMs, GetVM, WatchVMs), GET /v1/vms, and the metric
// vmre_vm_sandbox, one series per level, 1 for the VM's, which promtool
// accepts, and the node's log, a warning naming what is missing. Under
// best-effort, a VM whose policy asks more than the kernel has runs,
// partial, with the rule not applied and what it needs.
func TestNodeSandboxReported(t *testing.T) {
	requireLandlock(t)
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; the README asks for Debian's prometheus package: apt-get install -y prometheus")
	}
	dir := pluginDir(t, "examplevm", "partial")
	kernel := sandbox.LandlockABI()
	policies, err := sandbox.ParseFile([]byte(`{"vms": {"partial": {"landlock_abi": ` + strconv.Itoa(kernel+1) + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rec := vmretest.NewRecorder()
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Sandbox: sandbox.BestEffort, SandboxPolicy: policies,
		Logger: slog.New(slog.NewMultiHandler(rec, vmretest.Logger(t).Handler()))})
	for _, name := range []string{"examplevm", "partial"} {
		tn.states.wait(t, name, supervise.StateRunning, nil)
	}
	want := map[string]string{"examplevm": "full", "partial": "partial"}

	// The log: a warning that names the rule not applied for partial (it
	// is kept before the VM is running), a plain record for examplevm.
	logged := map[string]vmretest.Record{}
	for _, r := range rec.Records() {
		if name, _ := r.Attrs["vm"].(string); r.Message == "sandbox" && want[name] != "" {
			logged[name] = r
		}
	}
	if r := logged["partial"]; r.Level != slog.LevelWarn || r.Attrs["state"] != "partial" || r.Attrs["missing"] != "landlock_abi" {
		t.Errorf("the sandbox record of partial: %+v; want a warning, state partial, missing landlock_abi", r)
	}
	if r, ok := logged["examplevm"]; !ok || r.Level != slog.LevelInfo || r.Attrs["state"] != "full" || r.Attrs["missing"] != nil {
		t.Errorf("the sandbox record of examplevm: %+v, %v; want an information, state full, nothing missing", r, ok)
	}
	check := func(how string, vm *adminv1.VM) {
		t.Helper()
		sb := vm.GetSandbox()
		if sb.GetState() != want[vm.GetName()] || sb.GetLevel() != "best-effort" || sb.GetLandlockAbi() != uint32(kernel) ||
			sb.GetKernel() == "" || !strings.HasPrefix(sb.GetSummary(), "sandbox best-effort, "+want[vm.GetName()]) {
			t.Errorf("%s: %s's sandbox: %v; want best-effort, %s, Landlock ABI %d", how, vm.GetName(), sb, want[vm.GetName()], kernel)
		}
		rules := map[string]*adminv1.SandboxRule{}
		for _, r := range sb.GetRules() {
			rules[r.GetName()] = r
		}
		if r := rules["no_new_privs"]; !r.GetApplied() || !r.GetProtective() {
			t.Errorf("%s: %s's no_new_privs rule: %v", how, vm.GetName(), r)
		}
		abi, ok := rules["landlock_abi"]
		if vm.GetName() == "partial" && (!ok || abi.GetApplied() || abi.GetMissing() != "Landlock ABI "+strconv.Itoa(kernel+1)) {
			t.Errorf("%s: partial's landlock_abi rule: %v; want it not applied, missing Landlock ABI %d", how, abi, kernel+1)
		}
		if runtime.GOARCH == "amd64" && sb.GetMethod() != sandbox.MethodPtrace {
			t.Errorf("%s: %s's sandbox method %q, want ptrace", how, vm.GetName(), sb.GetMethod())
		}
	}

	for name, vm := range tn.vms(t) {
		check("ListVMs", vm)
		res, err := tn.admin.GetVM(t.Context(), connect.NewRequest(&adminv1.GetVMRequest{Name: name}))
		if err != nil {
			t.Fatal(err)
		}
		check("GetVM", res.Msg.GetVm())
	}

	ctx, cancel := context.WithCancel(t.Context())
	stream, err := tn.admin.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for range want {
		if !stream.Receive() {
			t.Fatalf("WatchVMs: %v", stream.Err())
		}
		check("WatchVMs", stream.Msg().GetVm())
	}
	cancel()
	stream.Close()

	var list struct {
		VMs []struct {
			Name    string `json:"name"`
			Sandbox struct {
				State string `json:"state"`
				Rules []struct {
					Name    string `json:"name"`
					Applied bool   `json:"applied"`
				} `json:"rules"`
			} `json:"sandbox"`
		} `json:"vms"`
	}
	if err := json.Unmarshal([]byte(get(t, tn.url+"/v1/vms")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.VMs) != len(want) {
		t.Errorf("GET /v1/vms lists %d VMs, want %d", len(list.VMs), len(want))
	}
	for _, vm := range list.VMs {
		if vm.Sandbox.State != want[vm.Name] || len(vm.Sandbox.Rules) == 0 {
			t.Errorf("GET /v1/vms: %s's sandbox %+v, want %s with its rules", vm.Name, vm.Sandbox, want[vm.Name])
		}
	}

	scrape := get(t, tn.url+"/metrics")
	for name, level := range want {
		for _, l := range []string{"off", "partial", "full"} {
			v := "0"
			if l == level {
				v = "1"
			}
			if line := fmt.Sprintf("vmre_vm_sandbox{level=%q,vm=%q} %s\n", l, name, v); !strings.Contains(scrape, line) {
				t.Errorf("GET /metrics lacks %q", line)
			}
		}
	}
	lint := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	lint.Stdin = strings.NewReader(scrape)
	if out, err := lint.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// A node without the sandbox says so of each VM it launched: level and
// state off, and the metric's off series at 1.
func TestNodeSandboxOff(t *testing.T) {
	t.Parallel()
	tn := startNode(t, node.Config{PluginDir: pluginDir(t, "examplevm")})
	tn.states.wait(t, "examplevm", supervise.StateRunning, nil)
	sb := tn.vms(t)["examplevm"].GetSandbox()
	if sb.GetLevel() != "off" || sb.GetState() != "off" || sb.GetSummary() != "sandbox off" || len(sb.GetRules()) != 0 {
		t.Errorf("examplevm's sandbox under Off: %v", sb)
	}
	if scrape := get(t, tn.url+"/metrics"); !strings.Contains(scrape, `vmre_vm_sandbox{level="off",vm="examplevm"} 1`+"\n") {
		t.Errorf("GET /metrics lacks the VM's off series:\n%s", scrape)
	}
}
