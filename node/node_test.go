//go:build linux

package node_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// TestNodeLifecycle drives a node of real example VMs through its admin
// API, mounted beside a route of its own: list, stop, start, restart, and
// reloads after a file is added, changed, removed and put back.
func TestNodeLifecycle(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "alpha", "beta")
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure})
	alpha := tn.states.wait(t, "alpha", supervise.StateRunning, nil)
	beta := tn.states.wait(t, "beta", supervise.StateRunning, nil)
	ctx := t.Context()

	// The node's own route and the node's routes, side by side.
	if body := get(t, tn.url+"/mine"); body != "the node's own route\n" {
		t.Errorf("GET /mine: %q", body)
	}
	vms := get(t, tn.url+"/v1/vms")
	for _, want := range []string{`"name": "alpha"`, `"state": "VM_STATE_RUNNING"`, `"restarts": 0`, `"pid": ` + itoa(alpha.Pid)} {
		if !strings.Contains(vms, want) {
			t.Errorf("GET /v1/vms lacks %s:\n%s", want, vms)
		}
	}
	if got := tn.vms(t); len(got) != 2 || got["alpha"].GetPid() != int32(alpha.Pid) {
		t.Fatalf("ListVMs: %v", got)
	}
	// An unpinned VM's digest is taken from its process once it runs, in
	// the background: nothing signals it.
	if !vmretest.Eventually(func() bool { return tn.vms(t)["beta"].GetDigest() != "" }) {
		t.Fatalf("beta's digest is still unknown %s after it started: %v", vmretest.WaitTimeout, tn.vms(t)["beta"])
	}

	// stop, start, restart.
	if res, err := tn.admin.StopVM(ctx, connect.NewRequest(&adminv1.StopVMRequest{Name: "beta"})); err != nil || !res.Msg.GetChanged() {
		t.Fatalf("StopVM: %v %v", res, err)
	}
	if !vmretest.ProcessGone(beta.Pid) {
		t.Errorf("beta (pid %d) runs after StopVM", beta.Pid)
	}
	if res, err := tn.admin.StartVM(ctx, connect.NewRequest(&adminv1.StartVMRequest{Name: "beta"})); err != nil ||
		res.Msg.GetVm().GetState() != adminv1.VMState_VM_STATE_RUNNING {
		t.Fatalf("StartVM: %v %v", res, err)
	}
	res, err := tn.admin.RestartVM(ctx, connect.NewRequest(&adminv1.RestartVMRequest{Name: "alpha"}))
	if err != nil || res.Msg.GetVm().GetPid() == int32(alpha.Pid) || res.Msg.GetVm().GetPid() == 0 {
		t.Fatalf("RestartVM: %v %v", res, err)
	}

	// A file added.
	copyFile(t, exampleVM, filepath.Join(dir, "gamma"), nil)
	report := reload(t, tn)
	if !slices.Equal(report.GetAdded(), []string{"gamma"}) || !slices.Equal(sorted(report.GetUnchanged()), []string{"alpha", "beta"}) {
		t.Errorf("reload after an add: %v", report)
	}
	gamma := tn.states.wait(t, "gamma", supervise.StateRunning, nil)

	// A file changed: rolled out.
	betaBefore := tn.vms(t)["beta"]
	copyFile(t, exampleVM, filepath.Join(dir, "beta"), []byte("version 2"))
	if report := reload(t, tn); !slices.Equal(report.GetChanged(), []string{"beta"}) || len(report.GetAdded()) != 0 {
		t.Errorf("reload after a change: %v", report)
	}
	done, _ := tn.rollouts.wait(t, "beta", "healthy", 0)
	if vm := tn.vms(t)["beta"]; vm.GetPending() != "" || vm.GetDigest() == betaBefore.GetDigest() || vm.GetDigest() != done.To ||
		vm.GetRollout().GetPhase() != adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED {
		t.Errorf("beta after its file changed: pending %q, digest %s, rollout %v; want none, the new digest %s, succeeded",
			vm.GetPending(), vm.GetDigest(), vm.GetRollout(), done.To)
	}

	// A file removed: the VM stops and leaves; the hook and the admin
	// API's watchers are told.
	watch, err := tn.admin.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := os.Remove(filepath.Join(dir, "gamma")); err != nil {
		t.Fatal(err)
	}
	if report := reload(t, tn); !slices.Equal(report.GetRemoved(), []string{"gamma"}) {
		t.Errorf("reload after a removal: %v", report)
	}
	if got := tn.states.removals(); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("Hooks.Removed told of %v; want gamma", got)
	}
	for watch.Receive() {
		if m := watch.Msg(); m.GetGone() {
			if m.GetVm().GetName() != "gamma" || m.GetVm().GetState() != adminv1.VMState_VM_STATE_STOPPED {
				t.Errorf("WatchVMs told gone: %v; want gamma, stopped", m.GetVm())
			}
			break
		}
	}
	if err := watch.Err(); err != nil {
		t.Fatalf("WatchVMs never told gamma gone: %v", err)
	}
	if !vmretest.ProcessGone(gamma.Pid) {
		t.Errorf("gamma (pid %d) runs after its file left", gamma.Pid)
	}
	if _, listed := tn.vms(t)["gamma"]; listed {
		t.Errorf("gamma is listed after its file left: %v", tn.vms(t)["gamma"])
	}

	// The file put back: the VM is added again, and runs.
	copyFile(t, exampleVM, filepath.Join(dir, "gamma"), nil)
	if report := reload(t, tn); !slices.Equal(report.GetAdded(), []string{"gamma"}) {
		t.Errorf("reload after the file came back: %v", report)
	}
	tn.states.wait(t, "gamma", supervise.StateRunning, func(vm supervise.VM) bool { return vm.Pid != gamma.Pid })
}

func reload(t *testing.T, tn *testNode) *adminv1.ReloadResponse {
	t.Helper()
	res, err := tn.admin.Reload(t.Context(), connect.NewRequest(&adminv1.ReloadRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

func itoa(i int) string { return strconv.Itoa(i) }
