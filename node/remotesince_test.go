package node_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// TestRemoteSince: GET /v1/vms gives a remote VM's since, the time of its
// last change of state: set when it runs, later when it is lost (its
// process killed), later again when a new process runs; each the time
// the node's state hook told.
func TestRemoteSince(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t)
	if err := os.WriteFile(filepath.Join(dir, "far.remote"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Remote: node.RemoteConfig{Listen: "127.0.0.1:0"}})
	vmretest.WaitClosed(t, tn.serving, "the node's first load, which enrolls far")
	en := enrollment(t, tn, "far")
	start := func() *exec.Cmd {
		t.Helper()
		vm := exec.Command(exampleVM)
		vm.Env = append(vmretest.Env(), vmre.EngineAddressKey+"="+en.GetEngineAddr(), vmre.EngineTokenKey+"="+en.GetToken(),
			vmre.EngineCertKey+"="+en.GetEngineCertSha256(), client.ListenAddrKey+"=127.0.0.1:0")
		if err := vm.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			vm.Wait()
		}()
		t.Cleanup(func() {
			vm.Process.Kill()
			<-exited
		})
		return vm
	}
	// since returns far's state and since in GET /v1/vms.
	since := func() (string, time.Time) {
		t.Helper()
		var list struct {
			VMs []struct {
				Name, State string
				Since       time.Time
			} `json:"vms"`
		}
		if err := json.Unmarshal([]byte(get(t, tn.url+"/v1/vms")), &list); err != nil {
			t.Fatal(err)
		}
		for _, vm := range list.VMs {
			if vm.Name == "far" {
				return vm.State, vm.Since
			}
		}
		t.Fatal("GET /v1/vms lists no far")
		return "", time.Time{}
	}
	check := func(what string, hook supervise.VM, state string, after time.Time) time.Time {
		t.Helper()
		got, at := since()
		if got != state || !at.Equal(hook.Since) || !at.After(after) {
			t.Errorf("%s: GET /v1/vms says %s since %s; want %s since %s (the state hook's), after %s",
				what, got, at.Format(time.RFC3339Nano), state, hook.Since.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
		}
		return hook.Since
	}

	before := time.Now()
	first := start()
	up := check("running", tn.states.wait(t, "far", supervise.StateRunning, nil), "VM_STATE_RUNNING", before)
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	lost := check("lost", tn.states.wait(t, "far", supervise.StateLost, nil), "VM_STATE_LOST", up)
	start()
	check("back", tn.states.wait(t, "far", supervise.StateRunning, func(vm supervise.VM) bool { return vm.Since.After(lost) }),
		"VM_STATE_RUNNING", lost)
}
