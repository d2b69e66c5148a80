package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// requireLandlock skips a test that needs Landlock on a kernel without it, and fails
// it under CI=true.
func requireLandlock(t *testing.T) { vmretest.RequireLandlock(t, "the sandbox's rules") }

// sandboxed is a VM launched through the sandbox, and its report.
type sandboxed struct {
	rt     *launcher.Runtime
	report *sandbox.Report
}

// newLauncher returns a launcher closed with the test, whose VMs run the
// test binary's mode when their command does not set its own Env. It
// starts them with sandbox.Start, as a node does, unless cfg says how.
func newLauncher(t *testing.T, cfg launcher.Config, mode string) *launcher.Launcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = vmretest.Logger(t)
	}
	if cfg.Start == nil {
		cfg.Start = sandbox.Start
	}
	if mode != "" {
		cfg.Env = append(cfg.Env, vmretest.ModeKey+"="+mode, "GORACE=atexit_sleep_ms=0")
	}
	l, err := launcher.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// launch runs vm through the sandbox with p and o, and returns it once its
// handshake is over, with the init step's report. The VM is stopped when
// the test ends.
func launch(t *testing.T, l *launcher.Launcher, vm *exec.Cmd, p sandbox.Policy, o sandbox.Options) sandboxed {
	t.Helper()
	sc, err := sandbox.Command(vm, p, o)
	if err != nil {
		t.Fatalf("sandbox.Command: %v", err)
	}
	rt, err := l.Launch(context.Background(), sc.Cmd, launcher.WithName("probe"))
	report, rerr := sc.Report()
	if err != nil {
		t.Fatalf("launch: %v (report: %v, %v)", err, report, rerr)
	}
	t.Cleanup(func() {
		rt.Stop(context.Background())
		<-rt.Done()
	})
	if rerr != nil {
		t.Fatalf("report: %v", rerr)
	}
	t.Logf("%s (%s)", report, report.Method)
	return sandboxed{rt: rt, report: report}
}

// probe asks the probe VM to try req.
func (s sandboxed) probe(t *testing.T, req probeRequest) probeResult {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := s.rt.HTTPClient().Post("http://"+s.rt.Status().Addr+"/probe", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("probe %+v: %v", req, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("probe %+v: %s", req, resp.Status)
	}
	var res probeResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("probe %+v: %v", req, err)
	}
	return res
}

// dirs makes a VM's data and temporary directories in a directory of the
// test's that a VM running as another user may enter.
func dirs(t *testing.T) sandbox.Options {
	t.Helper()
	base := sharedDir(t)
	o := sandbox.Options{Level: sandbox.Required, DataDir: base + "/data", TempDir: base + "/tmp"}
	for _, d := range []string{o.DataDir, o.TempDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// execCommand is a VM's command as a registry makes it: no Env of its own,
// so the launcher's Config.Env names the test binary's mode.
func execCommand(path string, args ...string) *exec.Cmd { return exec.Command(path, args...) }

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
