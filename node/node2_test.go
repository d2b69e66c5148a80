//go:build linux

package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// TestNodeRemoteDeclaration: a declaration added at a reload enrolls a
// remote VM, which handshakes over TLS and runs; its removal refuses its
// token at once and ends its session; put back, it gets a new token.
func TestNodeRemoteDeclaration(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t)
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Remote: node.RemoteConfig{Listen: "127.0.0.1:0"}})
	// The declaration comes after the first load, which would take it
	// itself, so that the reload is the one that adds it.
	vmretest.WaitClosed(t, tn.serving, "the node's first load")
	if err := os.WriteFile(filepath.Join(dir, "far.remote"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if report := reload(t, tn); !slices.Equal(report.GetAdded(), []string{"far"}) {
		t.Fatalf("reload after a declaration came: %v", report)
	}
	en := enrollment(t, tn, "far")
	vm := exec.Command(exampleVM)
	vm.Env = append(vmretest.Env(), vmre.EngineAddressKey+"="+en.GetEngineAddr(), vmre.EngineTokenKey+"="+en.GetToken(),
		vmre.EngineCertKey+"="+en.GetEngineCertSha256(), client.ListenAddrKey+"=127.0.0.1:0")
	var vmErr vmretest.SyncBuffer
	vm.Stderr = &vmErr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the remote VM's stderr:\n%s", vmErr.String())
		}
	})
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
	tn.states.wait(t, "far", supervise.StateRunning, nil)

	if err := os.Remove(filepath.Join(dir, "far.remote")); err != nil {
		t.Fatal(err)
	}
	if report := reload(t, tn); !slices.Equal(report.GetRemoved(), []string{"far"}) {
		t.Fatalf("reload after the declaration left: %v", report)
	}
	// Its session ended: the remote VM shuts down.
	vmretest.WaitClosed(t, exited, "the remote VM's end, after its declaration left")
	// The token is refused from now on.
	c := vmretest.PinnedClient(t, en.GetEngineCertSha256())
	engine := runtimev1connect.NewRuntimeServiceClient(c, "https://"+en.GetEngineAddr())
	req := connect.NewRequest(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "127.0.0.1:9"})
	req.Header().Set("Authorization", "Bearer "+en.GetToken())
	if _, err := engine.Initialize(t.Context(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("Initialize with the removed VM's token: %v; want unauthenticated", err)
	}
	if _, err := tn.admin.GetEnrollment(t.Context(), connect.NewRequest(&adminv1.GetEnrollmentRequest{Name: "far"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetEnrollment of the removed VM: %v; want not_found", err)
	}

	// Put back: enrolled again, with a new token.
	if err := os.WriteFile(filepath.Join(dir, "far.remote"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if report := reload(t, tn); !slices.Equal(report.GetAdded(), []string{"far"}) {
		t.Fatalf("reload after the declaration came back: %v", report)
	}
	if again := enrollment(t, tn, "far"); again.GetToken() == en.GetToken() {
		t.Error("the declaration put back has the revoked token")
	}
}

func enrollment(t *testing.T, tn *testNode, name string) *adminv1.Enrollment {
	t.Helper()
	res, err := tn.admin.GetEnrollment(t.Context(), connect.NewRequest(&adminv1.GetEnrollmentRequest{Name: name}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetEnrollment()
}

// TestNodeRestartKeepsStop: a VM an operator stopped stays stopped when the
// node restarts on the same data directory, and runs again once started.
func TestNodeRestartKeepsStop(t *testing.T) {
	t.Parallel()
	dir, data := pluginDir(t, "alpha", "beta"), t.TempDir()
	cfg := node.Config{PluginDir: dir, DataDir: data, Restart: supervise.Always}
	first := startNode(t, cfg)
	first.states.wait(t, "alpha", supervise.StateRunning, nil)
	first.states.wait(t, "beta", supervise.StateRunning, nil)
	if _, err := first.admin.StopVM(t.Context(), connect.NewRequest(&adminv1.StopVMRequest{Name: "beta"})); err != nil {
		t.Fatal(err)
	}
	first.stop()

	second := startNode(t, cfg)
	second.states.wait(t, "alpha", supervise.StateRunning, nil)
	second.states.wait(t, "beta", supervise.StateStopped, nil)
	if vm := second.vms(t)["beta"]; vm.GetState() != adminv1.VMState_VM_STATE_STOPPED || vm.GetPid() != 0 ||
		vm.GetError() != "" || vm.GetLastExit() != nil {
		t.Fatalf("beta after the node's restart: %v; want stopped, with no error nor exit: it never ran", vm)
	}
	for _, vm := range second.states.list {
		if vm.Name == "beta" && vm.Pid != 0 {
			t.Fatalf("beta ran after the node's restart: %+v", vm)
		}
	}
	if _, err := second.admin.StartVM(t.Context(), connect.NewRequest(&adminv1.StartVMRequest{Name: "beta"})); err != nil {
		t.Fatal(err)
	}
	second.stop()

	third := startNode(t, cfg)
	third.states.wait(t, "beta", supervise.StateRunning, nil)
}

// TestNodeClosesOldVersions: after 20 reloads of a changed pinned file, the
// node holds one sealed copy per VM, as many as before.
func TestNodeClosesOldVersions(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "alpha", "beta")
	pins := filepath.Join(t.TempDir(), "pins.sha256")
	writePins := func() {
		var b strings.Builder
		for _, name := range []string{"alpha", "beta"} {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			b.WriteString(hex.EncodeToString(sum[:]) + "  " + name + "\n")
		}
		if err := os.WriteFile(pins, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePins()
	memfds := func(t *testing.T) int { return memfdsOf(t, "alpha") + memfdsOf(t, "beta") } // the tests beside seal other VMs
	before := memfds(t)
	tn := startNode(t, node.Config{PluginDir: dir, Pins: pins, RequirePins: true, DataDir: t.TempDir()})
	tn.states.wait(t, "alpha", supervise.StateRunning, nil)
	tn.states.wait(t, "beta", supervise.StateRunning, nil)
	tn.kept(t, "alpha", digestOf(t, filepath.Join(dir, "alpha"))) // the copy reads the seal
	tn.kept(t, "beta", digestOf(t, filepath.Join(dir, "beta")))
	if got := memfds(t) - before; got != 2 {
		t.Fatalf("%d sealed copies for 2 pinned VMs", got)
	}
	for i := range 20 {
		copyFile(t, exampleVM, filepath.Join(dir, "alpha"), []byte("version "+itoa(i)))
		writePins()
		if report := reload(t, tn); !slices.Equal(report.GetChanged(), []string{"alpha"}) {
			t.Fatalf("reload %d: %v", i, report)
		}
	}
	// The rollouts of the changes settle on the last version.
	last := digestOf(t, filepath.Join(dir, "alpha"))
	for from := 0; ; {
		var r supervise.RolloutStatus
		r, from = tn.rollouts.wait(t, "alpha", "healthy", from)
		if r.To == last {
			break
		}
	}
	tn.kept(t, "alpha", last) // its copy, read from its seal, is made
	if got := memfds(t) - before; got != 2 {
		t.Errorf("%d sealed copies after 20 changes of a pinned file; want 2, one per VM", got)
	}
	// The VM's next launch runs the last version, from its sealed copy.
	if _, err := tn.admin.RestartVM(t.Context(), connect.NewRequest(&adminv1.RestartVMRequest{Name: "alpha"})); err != nil {
		t.Fatal(err)
	}
	if got := memfds(t) - before; got != 2 {
		t.Errorf("%d sealed copies after the restart; want 2", got)
	}
}

// digestOf is the SHA-256 of the file at path, in hex.
func digestOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// memfdsOf counts the process's open memfds of the VM name: the sealed
// copies of its versions (links in /proc/self/fd to /memfd:vmre:NAME).
func memfdsOf(t *testing.T, name string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, "/memfd:vmre:"+name+" ") {
			n++
		}
	}
	return n
}

// memfds counts the process's open memfds (links in /proc/self/fd to
// memfd:...): every one, or with of, those holding a copy of the bytes
// whose SHA-256 is *of. Tests that count them all run in parallel only
// with tests that make none (TestCloseWithoutRun is not parallel).
func memfds(t *testing.T, of ...[sha256.Size]byte) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		path := filepath.Join("/proc/self/fd", e.Name())
		if target, err := os.Readlink(path); err != nil || !strings.HasPrefix(target, "/memfd:") {
			continue
		}
		if len(of) > 0 {
			if b, err := os.ReadFile(path); err != nil || sha256.Sum256(b) != of[0] {
				continue
			}
		}
		n++
	}
	return n
}

// TestNodeLastAttempt: a VM that ran, then fails before its handshake on
// every attempt, shows that failure as its last exit and error, in the
// admin API and GET /v1/vms, never the exit of its earlier run.
func TestNodeLastAttempt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "broken")
	script := "#!/bin/sh\nif [ -e " + marker + " ]; then echo 'cannot open /etc/quitter.toml' >&2; exit 3; fi\nexec " + exampleVM + "\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "quitter"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure})
	ran := tn.states.wait(t, "quitter", supervise.StateRunning, nil)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(ran.Pid); err != nil {
		t.Fatal(err)
	}
	// Its first backoff follows the killed run; the next ones follow the
	// launches that failed.
	tn.states.wait(t, "quitter", supervise.StateCrashLoop, func(vm supervise.VM) bool { return vm.Attempt >= 3 })
	vm := tn.vms(t)["quitter"]
	if !strings.Contains(vm.GetLastExit().GetSummary(), "exit code 3") || !strings.Contains(vm.GetError(), "exited before its handshake") ||
		!strings.Contains(vm.GetError(), "cannot open /etc/quitter.toml") {
		t.Errorf("quitter: last exit %q, error %q; want the failed attempt's exit code 3 and its stderr",
			vm.GetLastExit().GetSummary(), vm.GetError())
	}
	body := get(t, tn.url+"/v1/vms")
	if strings.Contains(body, "killed") || !strings.Contains(body, `"summary": "exit code 3`) {
		t.Errorf("GET /v1/vms shows an earlier run's exit, or not the last attempt's:\n%s", body)
	}
}
