package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// tmp-writer is a VM that, before its handshake, makes a directory and a
// file in it where Go programs put temporary files (os.TempDir: TMPDIR),
// named after its pid, and fails to start if it cannot.
func init() {
	helpers["tmp-writer"] = func([]string) int {
		dir, err := os.MkdirTemp("", "launched-by-"+strconv.Itoa(os.Getpid())+"-")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "scratch"), []byte("a launch's temporary file\n"), 0o600)
		}
		if err == nil {
			err = client.Serve(context.Background(), http.NewServeMux())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return client.ExitCode(err)
		}
		return 0
	}
}

// A sandboxed VM's TMPDIR is DataDir/vms/NAME/tmp, made by the node: the
// VM writes there, and its next launch finds it empty.
func TestNodeSandboxTempDir(t *testing.T) {
	requireLandlock(t)
	t.Parallel()
	dir := t.TempDir()
	// The VM is the test binary itself, in the plugin directory as a
	// plugin's file is, which the sandbox lets it execute.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := vmretest.WriteExecutable(filepath.Join(dir, "scratcher"), self, 0o755); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure, Sandbox: sandbox.Required,
		Launch: launcher.Config{Env: append(vmretest.Env(), vmretest.ModeKey+"=tmp-writer")}})
	tmp := filepath.Join(data, "vms", "scratcher", "tmp")

	// left returns what the VM's launches left in its temporary directory.
	left := func() []string {
		t.Helper()
		entries, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatalf("the VM's temporary directory: %v", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	first := tn.states.wait(t, "scratcher", supervise.StateRunning, nil)
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(first.Pid) + "/environ")
	if err != nil || !strings.Contains("\x00"+string(environ), "\x00TMPDIR="+tmp+"\x00") {
		t.Fatalf("the VM's environment lacks TMPDIR=%s: %v", tmp, err)
	}
	// It wrote there (under the sandbox, which grants no other place in
	// the node's data directory).
	if names := left(); len(names) != 1 || !strings.HasPrefix(names[0], "launched-by-"+strconv.Itoa(first.Pid)+"-") {
		t.Fatalf("the temporary directory holds %q; want the VM's own directory, launched-by-%d-*", names, first.Pid)
	}

	// Killed, it is launched again, and finds its temporary directory
	// empty: only the new launch's directory is there.
	if err := syscallKill(first.Pid); err != nil {
		t.Fatal(err)
	}
	second := tn.states.wait(t, "scratcher", supervise.StateRunning, func(vm supervise.VM) bool { return vm.Pid != first.Pid })
	if names := left(); len(names) != 1 || !strings.HasPrefix(names[0], "launched-by-"+strconv.Itoa(second.Pid)+"-") {
		t.Errorf("after the VM's second launch, the temporary directory holds %q; want launched-by-%d-* alone", names, second.Pid)
	}
}

// A relative DataDir (vmre node --data-dir data) is the working
// directory's: the sandbox, whose rules take absolute paths, grants the
// VM its directories under it. Not parallel: it changes the working
// directory.
func TestNodeRelativeDataDir(t *testing.T) {
	requireLandlock(t)
	dir := t.TempDir()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := vmretest.WriteExecutable(filepath.Join(dir, "scratcher"), self, 0o755); err != nil {
		t.Fatal(err)
	}
	cwd := t.TempDir()
	t.Chdir(cwd)
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: "data", Sandbox: sandbox.Required,
		Launch: launcher.Config{Env: append(vmretest.Env(), vmretest.ModeKey+"=tmp-writer")}})
	running := tn.states.wait(t, "scratcher", supervise.StateRunning, nil)
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(running.Pid) + "/environ")
	if tmp := filepath.Join(cwd, "data", "vms", "scratcher", "tmp"); err != nil || !strings.Contains("\x00"+string(environ), "\x00TMPDIR="+tmp+"\x00") {
		t.Fatalf("the VM's environment lacks TMPDIR=%s: %v", tmp, err)
	}
}
