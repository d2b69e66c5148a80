package sandbox_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
)

// Both ways of applying a policy give the VM the same sandbox: the init
// step's exec, and Start's ptrace, which the tests launch with by default.
// The report's rules are the same; the VM reads its own /proc directory
// and not the node's or another process's; it has no_new_privs, the same
// limits, no tracer once it runs, and none of the descriptors only the
// init step had (the ruleset, the report pipe, the sealed copy).
func TestMethods(t *testing.T) {
	requireLandlock(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("Start applies policies through ptrace on amd64 only: elsewhere every launch takes the init step")
	}
	plugins := t.TempDir()
	vmFile := filepath.Join(plugins, "probevm")
	copyFile(t, os.Args[0], vmFile, 0o755)
	sealed := sealedCommand(t, plugins, "probevm")

	type seen struct {
		rules  string
		status map[string]string
		pipes  int
	}
	for _, kind := range []struct {
		name string
		cmd  func() *exec.Cmd
	}{{"file", func() *exec.Cmd { return execCommand(vmFile) }}, {"sealed", sealed}} {
		t.Run(kind.name, func(t *testing.T) {
			var got [2]seen
			for i, m := range []struct {
				method string
				start  func(*exec.Cmd) error
			}{{sandbox.MethodExec, (*exec.Cmd).Start}, {sandbox.MethodPtrace, sandbox.Start}} {
				l := newLauncher(t, launcher.Config{Start: m.start}, "probe")
				vm := launch(t, l, kind.cmd(), sandbox.Policy{}, dirs(t))
				if vm.report.Method != m.method {
					t.Fatalf("%s: report method %q, want %q", m.method, vm.report.Method, m.method)
				}
				pid := vm.rt.Status().Pid
				if tracer := procStatus(t, pid, "TracerPid"); tracer != "0" {
					t.Errorf("%s: the VM runs traced by %s", m.method, tracer)
				}
				st := vm.probe(t, probeRequest{Op: "status"})
				if st.Errno != 0 || st.Values["NoNewPrivs"] != "1" {
					t.Errorf("%s: the VM's own /proc/self/status: %+v, want it read, with NoNewPrivs 1", m.method, st)
				}
				for _, path := range []string{
					"/proc/" + strconv.Itoa(os.Getpid()) + "/cmdline", // the node's
					"/proc/" + strconv.Itoa(os.Getpid()) + "/status",
					"/proc/1/cmdline",
				} {
					if res := vm.probe(t, probeRequest{Op: "read", Path: path}); res.Errno != int(syscall.EACCES) {
						t.Errorf("%s: the VM read %s: %+v, want EACCES", m.method, path, res)
					}
				}
				got[i] = seen{rules: ruleNames(vm.report), status: st.Values, pipes: vmDescriptors(t, m.method, pid)}
			}
			if got[0].rules != got[1].rules {
				t.Errorf("rules under exec:\n%s\nunder ptrace:\n%s", got[0].rules, got[1].rules)
			}
			for _, key := range []string{"nofile", "core", "nproc", "VMRE_DATA_DIR", "TMPDIR", "euid"} {
				if a, b := got[0].status[key], got[1].status[key]; (a == "") != (b == "") || (key != "VMRE_DATA_DIR" && key != "TMPDIR" && a != b) {
					t.Errorf("%s under exec %q, under ptrace %q", key, a, b)
				}
			}
			if got[0].pipes != got[1].pipes {
				t.Errorf("the VM holds %d pipes under exec, %d under ptrace", got[0].pipes, got[1].pipes)
			}
		})
	}
}

// vmDescriptors fails the test for a descriptor of the VM pid that only
// the init step should have had, and returns how many pipes it holds.
func vmDescriptors(t *testing.T, method string, pid int) (pipes int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since
		}
		switch {
		case strings.HasPrefix(target, "pipe:"):
			pipes++
		case strings.Contains(target, "landlock"), strings.HasPrefix(target, "/memfd:"):
			t.Errorf("%s: the VM holds descriptor %s, %s", method, e.Name(), target)
		}
	}
	return pipes
}

// ruleNames lists a report's rules and whether each was applied.
func ruleNames(r *sandbox.Report) string {
	var lines []string
	for _, rule := range r.Rules {
		lines = append(lines, fmt.Sprintf("%s applied=%t missing=%q", rule.Name, rule.Applied, rule.Missing))
	}
	return strings.Join(lines, "\n")
}

// sealedCommand pins the file name of the plugin directory dir and returns
// a maker of commands that run its sealed copy, as a registry's pinned VM
// does.
func sealedCommand(t *testing.T, dir, name string) func() *exec.Cmd {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	pins := filepath.Join(t.TempDir(), "pins.sha256")
	if err := os.WriteFile(pins, fmt.Appendf(nil, "%x  %s\n", sha256.Sum256(b), name), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, report, err := registry.Load(registry.Config{Dir: dir, Pins: pins, RequirePins: true})
	if err != nil || report.Err() != nil {
		t.Fatalf("registry: %v %v", err, report.Err())
	}
	t.Cleanup(func() { reg.Close() })
	vm, ok := reg.Lookup(name)
	if !ok {
		t.Fatalf("%s is not in the registry", name)
	}
	return func() *exec.Cmd {
		cmd := vm.Command()
		if !strings.HasPrefix(cmd.Path, "/proc/self/fd/") {
			t.Fatalf("the pinned VM's command execs %s, not its sealed copy", cmd.Path)
		}
		return cmd
	}
}

// A policy that names a user takes the init step, which switches to it
// before the VM's exec; so does every launch once the system has refused
// to let the node trace a VM.
func TestStartFallsBack(t *testing.T) {
	requireLandlock(t)
	t.Run("user", func(t *testing.T) {
		l := newLauncher(t, launcher.Config{}, "probe")
		o := dirs(t)
		o.Level = sandbox.BestEffort // a node that may not switch users reports the rule not applied
		vm := launch(t, l, execCommand(os.Args[0]), sandbox.Policy{User: strconv.Itoa(os.Geteuid())}, o)
		if vm.report.Method != sandbox.MethodExec {
			t.Errorf("report method %q, want %q for a policy with a user", vm.report.Method, sandbox.MethodExec)
		}
	})
}

// A node whose system refuses ptrace (here a seccomp filter, as a systemd
// unit's SystemCallFilter= without @debug sets: EPERM, or the kill of the
// caller) launches its sandboxed VMs through the init step.
func TestStartPtraceRefused(t *testing.T) {
	requireLandlock(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("Start applies policies through ptrace on amd64 only")
	}
	if !hasCap(unix.CAP_SYS_ADMIN) {
		t.Skip("the test's node may not set a seccomp filter on all its threads (CAP_SYS_ADMIN)")
	}
	for _, action := range []string{"errno", "kill"} {
		t.Run(action, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], action)
			cmd.Env = append(os.Environ(), vmretest.ModeKey+"=ptrace-refused-node", "TMPDIR="+sharedDir(t))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the node refused ptrace: %v\n%s", err, out)
			}
			if got, want := strings.TrimSpace(string(out)), "exec full\nexec full"; got != want {
				t.Errorf("the node refused ptrace: launches %q, want %q (method and state of each)", got, want)
			}
		})
	}
}

// ptraceRefusedNode is a node whose every thread is refused ptrace, with
// EPERM or (args[0] "kill") by the kill of the process that calls it: it
// launches the test binary as the probe VM twice, sandboxed, and prints
// the method and state of each launch's report.
func ptraceRefusedNode(args []string) int {
	action := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	if len(args) > 0 && args[0] == "kill" {
		action = unix.SECCOMP_RET_KILL_PROCESS
	}
	if err := refusePtrace(action); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp:", err)
		return 2
	}
	l, err := launcher.New(launcher.Config{Start: sandbox.Start, Env: []string{vmretest.ModeKey + "=probe", "GORACE=atexit_sleep_ms=0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	for range 2 {
		base, err := os.MkdirTemp("", "node")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(base)
		o := sandbox.Options{Level: sandbox.Required, DataDir: base, TempDir: base}
		sc, err := sandbox.Command(exec.Command(os.Args[0]), sandbox.Policy{}, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		rt, err := l.Launch(context.Background(), sc.Cmd, launcher.WithName("probe"))
		report, rerr := sc.Report()
		if err != nil || rerr != nil {
			fmt.Fprintln(os.Stderr, err, rerr)
			return 1
		}
		fmt.Println(report.Method, report.State())
		rt.Stop(context.Background())
		<-rt.Done()
	}
	return 0
}

// refusePtrace gives every thread of this process, and what they start,
// the seccomp action for ptrace.
func refusePtrace(action uint32) error {
	const ld, jeq, ret = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_RET | unix.BPF_K
	prog := []unix.SockFilter{
		{Code: ld, K: 4}, // seccomp_data.arch
		{Code: jeq, Jt: 0, Jf: 3, K: unix.AUDIT_ARCH_X86_64},
		{Code: ld, K: 0}, // seccomp_data.nr
		{Code: jeq, Jt: 0, Jf: 1, K: unix.SYS_PTRACE},
		{Code: ret, K: action},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return e
	}
	return nil
}

// hasCap tells whether this thread has the effective capability c.
func hasCap(c uint) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return (uint64(data[0].Effective)|uint64(data[1].Effective)<<32)&(1<<c) != 0
}
