package sandbox_test

import (
	"bytes"

	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
)

// pythonVM is the Python example VM, a "#!/usr/bin/env python3" script.
const pythonVM = "../examples/http-vm/vm.py"

// Every kind of VM runs sandboxed with the default policy: an ELF binary
// and a "#!" script (the Python example VM), each from its file and from a
// pinned sealed copy (registry.VM.Command execs /proc/self/fd/N).
func TestKinds(t *testing.T) {
	requireLandlock(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is not in PATH: the Python example VM cannot run; install Python 3")
	}
	plugins := t.TempDir()
	copyFile(t, os.Args[0], filepath.Join(plugins, "probevm"), 0o755)
	copyFile(t, pythonVM, filepath.Join(plugins, "httpvm"), 0o755)
	var pins bytes.Buffer
	for _, name := range []string{"probevm", "httpvm"} {
		b, err := os.ReadFile(filepath.Join(plugins, name))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&pins, "%x  %s\n", sha256.Sum256(b), name)
	}
	pinsFile := filepath.Join(t.TempDir(), "pins.sha256")
	if err := os.WriteFile(pinsFile, pins.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, report, err := registry.Load(registry.Config{Dir: plugins, Pins: pinsFile, RequirePins: true})
	if err != nil || report.Err() != nil {
		t.Fatalf("registry: %v %v", err, report.Err())
	}
	t.Cleanup(func() { reg.Close() })

	for _, tc := range []struct {
		name   string
		mode   string // the test binary's mode, for the ELF VM
		sealed bool
	}{
		{name: "probevm", mode: "probe"},
		{name: "probevm", mode: "probe", sealed: true},
		{name: "httpvm"},
		{name: "httpvm", sealed: true},
	} {
		kind := "file"
		if tc.sealed {
			kind = "sealed"
		}
		t.Run(tc.name+"/"+kind, func(t *testing.T) {
			vm, ok := reg.Lookup(tc.name)
			if !ok {
				t.Fatalf("%s is not in the registry", tc.name)
			}
			cmd := vm.Command()
			if !tc.sealed {
				cmd = exec.Command(vm.Path())
			} else if !strings.HasPrefix(cmd.Path, "/proc/self/fd/") {
				t.Fatalf("the pinned VM's command execs %s, not its sealed copy", cmd.Path)
			}
			l := newLauncher(t, launcher.Config{}, tc.mode)
			s := launch(t, l, cmd, sandbox.Policy{}, dirs(t))
			if st := s.report.State(); st != sandbox.StateFull {
				t.Errorf("report: %s, want the whole policy applied", s.report)
			}
			pid := s.rt.Status().Pid
			if nnp := procStatus(t, pid, "NoNewPrivs"); nnp != "1" {
				t.Errorf("NoNewPrivs of the VM: %q, want 1", nnp)
			}
			exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
			t.Logf("the VM runs %s", exe)
			if tc.sealed && tc.mode != "" && !strings.HasPrefix(exe, "/memfd:") {
				t.Errorf("the sealed VM runs %s, not its sealed copy", exe)
			}
			if tc.mode == "" {
				// The Python VM answers its health check over Connect.
				healthCheck(t, s.rt)
				return
			}
			if res := s.probe(t, probeRequest{Op: "read", Path: pinsFile}); res.Errno == 0 {
				t.Errorf("the VM read the node's pins file: %+v", res)
			}
		})
	}
}

// healthCheck calls grpc.health.v1 Check of a VM over Connect with JSON.
func healthCheck(t *testing.T, rt *launcher.Runtime) {
	t.Helper()
	resp, err := rt.HTTPClient().Post("http://"+rt.Status().Addr+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "SERVING") {
		t.Errorf("health check: %s %s", resp.Status, body)
	}
}

// procStatus returns a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
