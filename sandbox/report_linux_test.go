package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// Required refuses a policy that asks more of Landlock than the kernel
// has, naming what is missing, before anything starts; best-effort runs
// the VM with what the kernel has, and its report says what was not
// applied.
func TestMissingFeature(t *testing.T) {
	requireLandlock(t)
	kernel := sandbox.LandlockABI()
	p := sandbox.Policy{LandlockABI: kernel + 1}
	want := "Landlock ABI " + strconv.Itoa(kernel+1)

	t.Run("required", func(t *testing.T) {
		o := dirs(t)
		sc, err := sandbox.Command(execCommand(os.Args[0]), p, o)
		var refused *sandbox.RefusedError
		if !errors.As(err, &refused) || !errors.Is(err, sandbox.ErrRefused) {
			t.Fatalf("sandbox.Command: %v, %v; want a *RefusedError", sc, err)
		}
		if !strings.Contains(err.Error(), want) || len(refused.Missing) != 1 || refused.Missing[0].Name != "landlock_abi" ||
			!strings.HasPrefix(refused.Missing[0].Missing, want) {
			t.Errorf("refused: %v (%+v); want landlock_abi, missing %s", err, refused.Missing, want)
		}
	})

	t.Run("best-effort", func(t *testing.T) {
		l := newLauncher(t, launcher.Config{}, "probe")
		o := dirs(t)
		o.Level = sandbox.BestEffort
		vm := launch(t, l, execCommand(os.Args[0]), p, o)
		if vm.report.State() != sandbox.StatePartial {
			t.Errorf("state %s, want partial", vm.report.State())
		}
		missing := vm.report.Missing()
		if len(missing) != 1 || missing[0].Name != "landlock_abi" || !strings.HasPrefix(missing[0].Missing, want) {
			t.Errorf("missing %+v, want landlock_abi needing %s", missing, want)
		}
		if !strings.Contains(vm.report.String(), "not applied: ") || !strings.Contains(vm.report.String(), want) {
			t.Errorf("report %q does not say what was not applied", vm.report)
		}
		// What the kernel has still holds.
		if res := vm.probe(t, probeRequest{Op: "read", Path: "/root/.bashrc"}); res.Errno != int(syscall.EACCES) && res.Errno != int(syscall.ENOENT) {
			t.Errorf("the best-effort VM read outside its files: %+v", res)
		}
	})
}

// Off runs the VM's own command, and its report says so.
func TestOff(t *testing.T) {
	vm := execCommand(os.Args[0])
	sc, err := sandbox.Command(vm, sandbox.Policy{}, sandbox.Options{Level: sandbox.Off})
	if err != nil || sc.Cmd != vm {
		t.Fatalf("Command under Off: %v, %v; want the VM's own command", sc, err)
	}
	report, err := sc.Report()
	if err != nil || report.Level != sandbox.Off || report.State() != sandbox.StateOff || report.String() != "sandbox off" {
		t.Errorf("report under Off: %v, %v", report, err)
	}
}

// An init step that cannot apply its policy (a declared path gone since
// the node checked it) does not exec the VM: the launch fails with the
// reason in the VM's stderr, Report returns it, and no descriptor is left.
func TestInitFails(t *testing.T) {
	requireLandlock(t)
	before, _ := vmretest.OpenFDs()
	gone := filepath.Join(t.TempDir(), "share")
	if err := os.Mkdir(gone, 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLauncher(t, launcher.Config{}, "probe")
	sc, err := sandbox.Command(execCommand(os.Args[0]), sandbox.Policy{Files: sandbox.Files{Read: []string{gone}}}, dirs(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	_, err = l.Launch(context.Background(), sc.Cmd, launcher.WithName("probe"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || !strings.Contains(strings.Join(lerr.Stderr, "\n"), gone) {
		t.Errorf("launch: %v; want the VM's exit, with the missing path in its stderr", err)
	}
	report, rerr := sc.Report()
	if rerr == nil || !strings.Contains(rerr.Error(), gone) || report == nil {
		t.Errorf("Report: %v, %v; want the report, and an error naming %s", report, rerr, gone)
	}
	l.Close()
	if !vmretest.Eventually(func() bool { n, _ := vmretest.OpenFDs(); return n <= before }) {
		n, _ := vmretest.OpenFDs()
		t.Errorf("%d descriptors open after the failed launch, %d before", n, before)
	}
}

// A sandboxed launch leaves no descriptor behind once the VM has stopped
// and its report been read.
func TestNoDescriptorLeft(t *testing.T) {
	requireLandlock(t)
	l := newLauncher(t, launcher.Config{}, "probe")
	o := dirs(t)
	before, ok := vmretest.OpenFDs()
	if !ok {
		t.Skip("no /proc/self/fd")
	}
	for range 3 {
		sc, err := sandbox.Command(execCommand(os.Args[0]), sandbox.Policy{}, o)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := l.Launch(context.Background(), sc.Cmd, launcher.WithName("probe"))
		if _, rerr := sc.Report(); err != nil || rerr != nil {
			t.Fatalf("launch: %v, report: %v", err, rerr)
		}
		rt.Stop(context.Background())
		<-rt.Done()
	}
	if !vmretest.Eventually(func() bool { n, _ := vmretest.OpenFDs(); return n <= before }) {
		n, _ := vmretest.OpenFDs()
		t.Errorf("%d descriptors open after 3 launches, %d before", n, before)
	}
}

// sandbox.Command refuses what it cannot run, and says why.
func TestCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    sandbox.Policy
		o    sandbox.Options
		want string
	}{
		{"relative data dir", sandbox.Policy{}, sandbox.Options{Level: sandbox.BestEffort, DataDir: "data"}, "not an absolute path"},
		{"missing data dir", sandbox.Policy{}, sandbox.Options{Level: sandbox.BestEffort, DataDir: "/nonexistent/vmre"}, "not a directory"},
		{"missing declared path", sandbox.Policy{Files: sandbox.Files{Write: []string{"/nonexistent/vmre"}}},
			sandbox.Options{Level: sandbox.BestEffort}, "files.write"},
		{"unknown user", sandbox.Policy{User: "no-such-user-vmre"}, sandbox.Options{Level: sandbox.BestEffort}, "no-such-user-vmre"},
		{"root path", sandbox.Policy{Files: sandbox.Files{Read: []string{"/"}}}, sandbox.Options{Level: sandbox.BestEffort}, "files.unrestricted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sandbox.Command(execCommand(os.Args[0]), tc.p, tc.o)
			if !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrInvalidConfig saying %q", err, tc.want)
			}
		})
	}
}
