package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// nobody is the user the tests that need a user other than root run VMs as.
const nobody = 65534

// requireSetID skips a test that runs a VM as another user where the test
// may not switch users, saying so.
func requireSetID(t *testing.T) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || data[0].Effective&(1<<unix.CAP_SETUID|1<<unix.CAP_SETGID) != 1<<unix.CAP_SETUID|1<<unix.CAP_SETGID {
		t.Skip("the test may not switch users (CAP_SETUID, CAP_SETGID): run it as root to test a VM's user, its process limit and setuid helpers")
	}
}

// sharedDir returns a directory of the test that every user may read and
// enter, for a VM that runs as another user.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The VM's open-files limit is the policy's, or by default 1024 (soft) and
// 32768 (hard) where the node's hard limit allows, which a VM raises as
// rpcchainvm plugins do; core size is 0; its address space, data and CPU
// seconds are those its policy declares.
func TestLimits(t *testing.T) {
	requireLandlock(t)
	l := newLauncher(t, launcher.Config{}, "probe")
	var node unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &node); err != nil {
		t.Fatal(err)
	}

	t.Run("default", func(t *testing.T) {
		vm := launch(t, l, execCommand(os.Args[0]), sandbox.Policy{}, dirs(t))
		st := vm.probe(t, probeRequest{Op: "status"})
		// 32768, or the node's hard limit where it is lower and the node
		// may not raise it.
		hard := uint64(32768)
		if r, _ := vm.report.Rule("limits.open_files"); !r.Applied {
			hard = node.Max
		}
		// A Go VM raises its soft limit to the hard one as it starts.
		if !strings.HasSuffix(st.Values["nofile"], fmt.Sprintf("/%d", hard)) {
			t.Errorf("open files %s (soft/hard), want a hard limit of %d", st.Values["nofile"], hard)
		}
		if st.Values["core"] != "0/0" {
			t.Errorf("core size %s, want 0/0", st.Values["core"])
		}
		// As subnet-evm does, where the hard limit allows.
		if res := vm.probe(t, probeRequest{Op: "raise-nofile", N: int(hard)}); res.Errno != 0 {
			t.Errorf("the VM could not raise its open-files limit to %d: %+v", hard, res)
		}
		if r, _ := vm.report.Rule("limits.open_files"); !r.Applied && (node.Max >= 32768 || r.Missing != "CAP_SYS_RESOURCE") {
			t.Errorf("the node's hard limit is %d, and the report says %+v", node.Max, r)
		}
	})

	t.Run("declared", func(t *testing.T) {
		p := sandbox.Policy{Limits: sandbox.Limits{
			OpenFiles: &sandbox.Limit{Soft: 256, Hard: 512},
			Core:      &sandbox.Limit{Soft: 0, Hard: 0},
		}}
		vm := launch(t, l, execCommand(os.Args[0]), p, dirs(t))
		st := vm.probe(t, probeRequest{Op: "status"})
		if !strings.HasSuffix(st.Values["nofile"], "/512") {
			t.Errorf("open files %s (soft/hard), want a hard limit of 512", st.Values["nofile"])
		}
		if res := vm.probe(t, probeRequest{Op: "raise-nofile", N: 32768}); res.Errno != int(syscall.EPERM) {
			t.Errorf("the VM raised its open-files limit above its hard limit: %+v", res)
		}
	})

	// Address space, data and CPU time, which the node leaves at its own
	// (unlimited here) unless a policy sets them: the VM reads back each
	// value the policy declares. The sizes leave room for the race
	// detector's reservations.
	t.Run("address space, data and CPU", func(t *testing.T) {
		declared := map[string]sandbox.Limit{
			"as":   {Soft: 64 << 30, Hard: 128 << 30},
			"data": {Soft: 32 << 30, Hard: 64 << 30},
			"cpu":  {Soft: 3600, Hard: 7200},
		}
		for name, res := range map[string]int{"as": unix.RLIMIT_AS, "data": unix.RLIMIT_DATA, "cpu": unix.RLIMIT_CPU} {
			var rl unix.Rlimit
			if err := unix.Getrlimit(res, &rl); err != nil {
				t.Fatal(err)
			}
			if rl.Max < declared[name].Hard {
				t.Skipf("the node's hard %s limit is %d, below the test's %d: the policy could not be applied", name, rl.Max, declared[name].Hard)
			}
			if rl.Cur == declared[name].Soft && rl.Max == declared[name].Hard {
				t.Fatalf("the node's own %s limit is the one the test declares: the test could not fail", name)
			}
		}
		as, data, cpu := declared["as"], declared["data"], declared["cpu"]
		p := sandbox.Policy{Limits: sandbox.Limits{AddressSpace: &as, Data: &data, CPUSeconds: &cpu}}
		vm := launch(t, l, execCommand(os.Args[0]), p, dirs(t))
		st := vm.probe(t, probeRequest{Op: "status"})
		for name, rule := range map[string]string{"as": "limits.address_space", "data": "limits.data", "cpu": "limits.cpu_seconds"} {
			if want := fmt.Sprintf("%d/%d", declared[name].Soft, declared[name].Hard); st.Values[name] != want {
				t.Errorf("the VM's %s limit %s (soft/hard), want the policy's %s", name, st.Values[name], want)
			}
			if r, ok := vm.report.Rule(rule); !ok || !r.Applied {
				t.Errorf("the report's %s: %+v, %v; want it applied", rule, r, ok)
			}
		}
	})
}

// A VM that forks past its process limit is refused a process, and the
// node and the VM go on.
func TestProcessLimit(t *testing.T) {
	requireLandlock(t)
	requireSetID(t)
	dir := sharedDir(t)
	vmFile := filepath.Join(dir, "probevm")
	copyFile(t, os.Args[0], vmFile, 0o755)
	const limit = 40
	l := newLauncher(t, launcher.Config{}, "probe")
	o := dirs(t)
	vm := launch(t, l, execCommand(vmFile), sandbox.Policy{User: fmt.Sprint(nobody),
		Limits: sandbox.Limits{Processes: &sandbox.Limit{Soft: limit, Hard: limit}}}, o)
	if r, _ := vm.report.Rule("limits.processes"); !r.Applied {
		t.Fatalf("the process limit was not applied: %+v", r)
	}
	st := vm.probe(t, probeRequest{Op: "status"})
	if want := fmt.Sprintf("%d/%d", limit, limit); st.Values["nproc"] != want || st.Values["euid"] != fmt.Sprint(nobody) {
		t.Fatalf("the VM runs as %s with a process limit of %s, want %d and %s", st.Values["euid"], st.Values["nproc"], nobody, want)
	}
	res := vm.probe(t, probeRequest{Op: "fork", N: 2 * limit})
	if res.Errno != int(syscall.EAGAIN) || res.Count >= limit {
		t.Errorf("the VM started %d processes past a limit of %d: %+v; want EAGAIN before %d", res.Count, limit, res, limit)
	}
	// The VM goes on, and so does the node.
	if st := vm.probe(t, probeRequest{Op: "status"}); st.Errno != 0 {
		t.Errorf("the VM after its refused fork: %+v", st)
	}
	if out, err := exec.Command("/bin/true").CombinedOutput(); err != nil {
		t.Errorf("the node cannot start a process after the VM's refused fork: %v %s", err, out)
	}
}

// The VM runs with no_new_privs: a setuid-root helper it runs gets no root.
func TestNoNewPrivs(t *testing.T) {
	requireLandlock(t)
	l := newLauncher(t, launcher.Config{}, "probe")
	t.Run("status", func(t *testing.T) {
		vm := launch(t, l, execCommand(os.Args[0]), sandbox.Policy{}, dirs(t))
		if st := vm.probe(t, probeRequest{Op: "status"}); st.Values["NoNewPrivs"] != "1" {
			t.Errorf("/proc/self/status of the VM: NoNewPrivs %q, want 1 (%+v)", st.Values["NoNewPrivs"], st)
		}
	})
	t.Run("setuid helper", func(t *testing.T) {
		requireSetID(t)
		dir := sharedDir(t)
		vmFile := filepath.Join(dir, "probevm")
		copyFile(t, os.Args[0], vmFile, 0o755)
		helper := filepath.Join(dir, "setuid-helper")
		copyFile(t, os.Args[0], helper, 0o755)
		if err := os.Chown(helper, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(helper, 0o755|os.ModeSetuid); err != nil {
			t.Fatal(err)
		}
		// Outside the sandbox, the helper gives nobody root: the check can
		// fail.
		cmd := exec.Command(helper)
		cmd.Env = append(os.Environ(), "VMRE_TEST_HELPER=euid")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.Output()
		if err != nil || !strings.HasPrefix(string(out), "euid=0 ") {
			t.Fatalf("the setuid helper run by nobody outside the sandbox: %q, %v; want euid=0", out, err)
		}
		vm := launch(t, l, execCommand(vmFile), sandbox.Policy{User: fmt.Sprint(nobody),
			Files: sandbox.Files{Read: []string{helper}}}, dirs(t))
		res := vm.probe(t, probeRequest{Op: "exec", Path: helper})
		if want := fmt.Sprintf("euid=%d uid=%d\n", nobody, nobody); res.Errno != 0 || res.Output != want {
			t.Errorf("the setuid helper run by the VM: %+v, want %q", res, want)
		}
	})
}
