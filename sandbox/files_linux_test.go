package sandbox_test

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// A VM reads none of the node's secrets: the node's data directory, a
// staking key in a home directory, another VM's data directory, the
// node's environment in /proc; it writes
// its own data and temporary directories, and neither /usr nor the
// plugin directory.
func TestFiles(t *testing.T) {
	requireLandlock(t)
	node := t.TempDir() // the node's data directory
	home := t.TempDir() // a validator's home
	secrets := map[string]string{
		"the node's data directory": filepath.Join(node, "engine.key"),
		"a staking key in the home": filepath.Join(home, ".avalanchego", "staking", "staker.key"),
		"another VM's data":         filepath.Join(node, "vms", "other", "data", "db"),
	}
	for _, path := range secrets {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := sandbox.Options{Level: sandbox.Required, DataDir: filepath.Join(node, "vms", "probe", "data"), TempDir: filepath.Join(node, "vms", "probe", "tmp")}
	for _, d := range []string{o.DataDir, o.TempDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The plugin directory holds the VM's file.
	plugins := t.TempDir()
	vmFile := filepath.Join(plugins, "probevm")
	copyFile(t, os.Args[0], vmFile, 0o755)
	neighbour := filepath.Join(plugins, "othervm")
	if err := os.WriteFile(neighbour, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	l := newLauncher(t, launcher.Config{}, "probe")
	vm := launch(t, l, execCommand(vmFile), sandbox.Policy{}, o)

	// The node's environment and memory map, which /proc shows to any
	// process of the node's user.
	secrets["the node's environment"] = "/proc/" + strconv.Itoa(os.Getpid()) + "/environ"
	secrets["the node's memory map"] = "/proc/" + strconv.Itoa(os.Getpid()) + "/maps"
	for what, path := range secrets {
		// The node itself reads it: the VM is denied by the sandbox, not by
		// the file's mode.
		if _, err := os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		if res := vm.probe(t, probeRequest{Op: "read", Path: path}); res.Errno != int(syscall.EACCES) {
			t.Errorf("the VM read %s (%s): %+v, want EACCES", what, path, res)
		}
	}
	for what, path := range map[string]string{
		"its data directory":      filepath.Join(o.DataDir, "state"),
		"its temporary directory": filepath.Join(o.TempDir, "scratch"),
	} {
		if res := vm.probe(t, probeRequest{Op: "write", Path: path}); res.Errno != 0 {
			t.Errorf("the VM could not write %s (%s): %+v", what, path, res)
		}
		if res := vm.probe(t, probeRequest{Op: "read", Path: path}); res.Errno != 0 {
			t.Errorf("the VM could not read back %s: %+v", what, res)
		}
	}
	if res := vm.probe(t, probeRequest{Op: "mkdir", Path: filepath.Join(o.DataDir, "db")}); res.Errno != 0 {
		t.Errorf("the VM could not make a directory in its data directory: %+v", res)
	}
	for what, path := range map[string]string{
		"/usr":                 "/usr/vmre-sandbox-test",
		"the plugin directory": filepath.Join(plugins, "planted"),
		"another VM's file":    neighbour,
	} {
		if res := vm.probe(t, probeRequest{Op: "write", Path: path}); res.Errno != int(syscall.EACCES) {
			t.Errorf("the VM wrote %s (%s): %+v, want EACCES", what, path, res)
		}
	}
	// Nor may it signal the node (Landlock's IPC scope, ABI 6).
	if res := vm.probe(t, probeRequest{Op: "signal", N: os.Getpid()}); res.Errno != int(syscall.EPERM) {
		t.Errorf("the VM signalled the node: %+v, want EPERM", res)
	}
	st := vm.probe(t, probeRequest{Op: "status"})
	if st.Values["VMRE_DATA_DIR"] != o.DataDir || st.Values["os.TempDir"] != o.TempDir {
		t.Errorf("the VM's data directory %q and temporary directory %q, want %q and %q",
			st.Values["VMRE_DATA_DIR"], st.Values["os.TempDir"], o.DataDir, o.TempDir)
	}
}

// A policy's files.write paths are the VM's to write, a directory with
// what lies beneath it or a single file; its files.read paths it may read
// and not write (EACCES), nor may it write beside them.
func TestFilesDeclared(t *testing.T) {
	requireLandlock(t)
	base := t.TempDir()
	rw, ro, beside := filepath.Join(base, "shared-db"), filepath.Join(base, "genesis"), filepath.Join(base, "undeclared")
	for _, d := range []string{rw, ro, beside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rwFile, roFile, besideFile := filepath.Join(base, "peers.json"), filepath.Join(ro, "genesis.json"), filepath.Join(beside, "config.json")
	for _, f := range []string{rwFile, roFile, besideFile} {
		if err := os.WriteFile(f, []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l := newLauncher(t, launcher.Config{}, "probe")
	vm := launch(t, l, execCommand(os.Args[0]), sandbox.Policy{Files: sandbox.Files{
		Read:  []string{ro},
		Write: []string{rw, rwFile},
	}}, dirs(t))
	if r, ok := vm.report.Rule("files"); !ok || !r.Applied {
		t.Fatalf("the report's files rule: %+v, %v; want it applied", r, ok)
	}

	for what, req := range map[string]probeRequest{
		"a new file in a write directory":     {Op: "write", Path: filepath.Join(rw, "state")},
		"a directory in a write directory":    {Op: "mkdir", Path: filepath.Join(rw, "db")},
		"a write file":                        {Op: "write", Path: rwFile},
		"a file in a read directory, to read": {Op: "read", Path: roFile},
	} {
		if res := vm.probe(t, req); res.Errno != 0 {
			t.Errorf("%s (%s %s): %+v; want it allowed", what, req.Op, req.Path, res)
		}
	}
	if b, err := os.ReadFile(rwFile); err != nil || string(b) != "written by the VM\n" {
		t.Errorf("the write file after the VM wrote it: %q, %v", b, err)
	}
	for what, req := range map[string]probeRequest{
		"a file in a read directory":              {Op: "write", Path: roFile},
		"a new file in a read directory":          {Op: "write", Path: filepath.Join(ro, "planted")},
		"a directory in a read directory":         {Op: "mkdir", Path: filepath.Join(ro, "db")},
		"a file beside the write file":            {Op: "write", Path: filepath.Join(base, "beside.json")},
		"a directory declared in no key":          {Op: "write", Path: filepath.Join(beside, "state")},
		"a directory declared in no key, to read": {Op: "read", Path: besideFile},
	} {
		if res := vm.probe(t, req); res.Errno != int(syscall.EACCES) {
			t.Errorf("%s (%s %s): %+v; want EACCES", what, req.Op, req.Path, res)
		}
	}
	if b, err := os.ReadFile(roFile); err != nil || string(b) != "{}\n" {
		t.Errorf("the read-only file after the VM's refused write: %q, %v", b, err)
	}
}
