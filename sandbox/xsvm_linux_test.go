package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// xsvmDir is the module that builds xsvm, AvalancheGo's example rpcchainvm
// plugin; `make examples` builds it there.
const xsvmDir = "testdata/xsvm"

// xsvmProtocol is the rpcchainvm protocol version of the AvalancheGo that
// testdata/xsvm/go.mod requires (v1.13.0).
const xsvmProtocol = 39

// xsvm returns the path of xsvm, building it when `make examples` has not.
func xsvm(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(xsvmDir, "xsvm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building xsvm in %s (make examples does it once)", xsvmDir)
	cmd := exec.Command("go", "build", "-o", "xsvm", "github.com/ava-labs/avalanchego/vms/example/xsvm/cmd/xsvm")
	cmd.Dir = xsvmDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build xsvm: %v\n%s", err, out)
	}
	return bin
}

// A real rpcchainvm plugin that nobody here wrote (xsvm, built from
// AvalancheGo's module) runs sandboxed with the default policy under the
// legacy handshake, and stops gracefully through its Shutdown.
func TestRPCChainVM(t *testing.T) {
	requireLandlock(t)
	bin := xsvm(t)
	l := newLauncher(t, launcher.Config{Legacy: true, LegacyShutdown: true, ProtocolVersion: xsvmProtocol}, "")
	sc, err := sandbox.Command(exec.Command(bin), sandbox.Policy{}, dirs(t))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := l.Launch(context.Background(), sc.Cmd, launcher.WithName("xsvm"))
	report, rerr := sc.Report()
	if err != nil {
		t.Fatalf("launch: %v (report: %s, %v)", err, report, rerr)
	}
	if rerr != nil || report.State() != sandbox.StateFull {
		t.Errorf("report: %s, %v; want the whole policy applied", report, rerr)
	}
	if nnp := procStatus(t, rt.Status().Pid, "NoNewPrivs"); nnp != "1" {
		t.Errorf("NoNewPrivs of xsvm: %q, want 1", nnp)
	}
	rt.Stop(context.Background())
	<-rt.Done()
	exit, _ := rt.Exit()
	if !exit.Success() {
		t.Errorf("xsvm ended %s, want exit code 0 after its Shutdown", exit)
	}
}
