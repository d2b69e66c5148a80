package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Start starts cmd. Give it to the node's launcher (launcher.Config.Start):
// a command that Command made then costs no second program. Start execs
// the VM itself, stopped by ptrace at its first instruction; sets its
// resource limits (prlimit); has it call prctl(PR_SET_NO_NEW_PRIVS) and
// landlock_restrict_self with the policy's ruleset, which then grants the
// VM's own /proc directory by its pid, and close the descriptors that only
// the init step would have had; sends the Report; and lets the VM run. The
// VM runs under the same rules as under the init step, from its first
// instruction, with the same descriptors, and Cmd.Report reads the report
// as before.
//
// Where the node cannot do that, Start starts cmd as it is, and the init
// step applies the policy: a policy that names a user or group (the switch
// happens before the VM's exec), a kernel or system that refuses ptrace
// (Yama's ptrace_scope 3, or 2 without CAP_SYS_PTRACE; a seccomp filter),
// a processor other than amd64 or a 32-bit VM, and a policy that cannot be
// applied whole
// (the init step then says why, as it always has). Report.Method tells
// which way a launch took. Any other command is started as it is.
//
// Start must run on one OS thread until it returns (it locks its goroutine
// to it), and that thread is the VM's parent, whose end sends the VM its
// parent-death signal: the launcher's thread that starts VMs is one.
func Start(cmd *exec.Cmd) error {
	s, ok := initStepOf(cmd)
	if !ok || !tracePossible(s) {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sent, err := startTraced(cmd, s)
	switch {
	case err == nil || sent:
		return err
	case errors.Is(err, errTraceRefused):
		traceRefused.Store(true)
	}
	return cmd.Start()
}

// errTraceRefused is why the VM could not be started under ptrace: the
// system refuses PTRACE_TRACEME.
var errTraceRefused = errors.New("ptrace refused")

// traceRefused is set once the system has refused to let a VM be traced:
// every launch of the process then runs its init step. It is the
// process's, as what it records is (Yama, a seccomp filter, a tracer of
// the node's own).
var traceRefused atomic.Bool

// initStepOf returns the spec of a command that Command made.
func initStepOf(cmd *exec.Cmd) (*spec, bool) {
	if cmd == nil || cmd.Process != nil || len(cmd.Args) < 3 || cmd.Args[0] != InitName {
		return nil, false
	}
	var s spec
	if err := json.Unmarshal([]byte(cmd.Args[1]), &s); err != nil {
		return nil, false
	}
	slot := func(fd int) bool { return fd >= 3 && fd-3 < len(cmd.ExtraFiles) && cmd.ExtraFiles[fd-3] != nil }
	if !slot(s.Report) || (s.Image >= 0 && !slot(s.Image)) {
		return nil, false
	}
	return &s, true
}

// tracePossible tells whether the node may apply s to a VM it starts: no
// user to switch to, this processor, and a system that lets a process
// trace its child.
func tracePossible(s *spec) bool {
	return s.UID < 0 && s.GID < 0 && injectArch && !traceRefused.Load() && yamaAllows()
}

// yamaAllows tells whether Yama's ptrace_scope lets this process trace a
// child that asked to be traced (PTRACE_TRACEME): not at scope 3, and at
// scope 2 only with CAP_SYS_PTRACE.
var yamaAllows = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return true // no Yama
	}
	switch strings.TrimSpace(string(b)) {
	case "0", "1":
		return true
	case "2":
		return effectiveCaps()&(1<<unix.CAP_SYS_PTRACE) != 0
	}
	return false
})

// startTraced starts the VM of the init step's command cmd, applies s to
// it before it runs, sends the report, and lets it run. On an error before
// the report was sent (sent false) nothing runs: cmd is still to start.
func startTraced(cmd *exec.Cmd, s *spec) (sent bool, err error) {
	env := cmd.Environ()
	p, err := makePlan(s, processFacts(lookup(env)))
	if err == nil {
		err = p.refused()
	}
	if err != nil {
		return false, err
	}
	p.report.Method = MethodPtrace
	report, err := json.Marshal(message{Report: &p.report})
	if err != nil {
		return false, err
	}
	rulesetFD, flags, err := ruleset(p, "")
	if err != nil {
		return false, err
	}
	var rules *os.File
	if rulesetFD >= 0 {
		rules = os.NewFile(uintptr(rulesetFD), "landlock ruleset")
		defer rules.Close()
	}

	// The VM's command: the init step's, with the VM in its place. The
	// ruleset takes the report's descriptor, which the VM would not have
	// had either, until the VM has used and closed it.
	extra := slices.Clone(cmd.ExtraFiles)
	extra[s.Report-3] = rules
	attr := &syscall.SysProcAttr{}
	if cmd.SysProcAttr != nil {
		*attr = *cmd.SysProcAttr
	}
	attr.Ptrace = true
	vm := &exec.Cmd{Path: s.Path, Args: cmd.Args[2:], Env: vmEnv(env, s.Env), Dir: cmd.Dir,
		Stdin: cmd.Stdin, Stdout: cmd.Stdout, Stderr: cmd.Stderr, ExtraFiles: extra, SysProcAttr: attr}
	if err := vm.Start(); err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, fmt.Errorf("%w: %w", errTraceRefused, err)
		}
		return false, err
	}
	t := tracee{pid: vm.Process.Pid}
	err = t.stopped()
	if err == nil {
		err = applyTraced(&t, s, p, rules, flags)
	}
	if err == nil {
		// The report goes first: whoever reads it once the VM runs finds
		// it whole. The pipe is empty and the report small: it does not
		// block.
		if _, err = cmd.ExtraFiles[s.Report-3].Write(append(report, '\n')); err != nil {
			err = fmt.Errorf("send the report: %w", err)
		} else if err = t.detach(); err != nil {
			sent = true
		}
	}
	if err != nil {
		t.kill()
		vm.Process.Release()
		return sent, err
	}
	cmd.Process = vm.Process
	return true, nil
}

// applyTraced applies p to the VM t, stopped at its first instruction:
// its limits, then no_new_privs and the ruleset, which it takes at the
// descriptor of the report, and the closing of what the init step would
// have closed at its exec.
func applyTraced(t *tracee, s *spec, p *plan, rules *os.File, flags uint32) error {
	for _, l := range p.limits {
		rl := unix.Rlimit{Cur: l.Limit.Soft, Max: l.Limit.Hard}
		if err := unix.Prlimit(t.pid, resources[l.Name], &rl, nil); err != nil {
			return fmt.Errorf("prlimit %s %s: %w", l.Name, l.Limit, err)
		}
	}
	if rules != nil {
		if err := addSelf(int(rules.Fd()), p, t.pid); err != nil {
			return err
		}
	}
	calls := []syscallArgs{{"prctl(PR_SET_NO_NEW_PRIVS)", unix.SYS_PRCTL, [6]uintptr{unix.PR_SET_NO_NEW_PRIVS, 1}}}
	if rules != nil {
		calls = append(calls,
			syscallArgs{"landlock_restrict_self", unix.SYS_LANDLOCK_RESTRICT_SELF, [6]uintptr{uintptr(s.Report), uintptr(flags)}},
			syscallArgs{"close", unix.SYS_CLOSE, [6]uintptr{uintptr(s.Report)}})
	}
	if s.Image >= 0 {
		calls = append(calls, syscallArgs{"close", unix.SYS_CLOSE, [6]uintptr{uintptr(s.Image)}})
	}
	return t.inject(calls)
}

// addSelf adds to the ruleset the grant of the VM's own /proc directory,
// by its pid, with the rights the plan gives procSelf.
func addSelf(rulesetFD int, p *plan, pid int) error {
	for _, g := range p.files {
		if g.Path != procSelf || g.set == 0 {
			continue
		}
		dir := "/proc/" + strconv.Itoa(pid)
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("grant %s: %w", dir, err)
		}
		defer unix.Close(fd)
		return addPathRule(rulesetFD, fd, g.set)
	}
	return nil
}

// syscallArgs is a system call for the VM to make.
type syscallArgs struct {
	name string // for errors
	nr   uintptr
	args [6]uintptr
}

// tracee is a VM started under ptrace, whose tracer is this thread.
type tracee struct {
	pid    int
	exited bool // reaped: nothing left to kill
}

// stopped waits for the VM's stop at its first instruction: the SIGTRAP
// that follows the exec of a traced process. From then on the VM dies
// with this process (PTRACE_O_EXITKILL).
func (t *tracee) stopped() error {
	ws, err := t.wait()
	if err != nil {
		return err
	}
	if ws.Signaled() && ws.Signal() == unix.SIGSYS {
		// A seccomp filter killed it at its PTRACE_TRACEME.
		return fmt.Errorf("%w: the VM was killed by SIGSYS before its exec", errTraceRefused)
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("the VM did not stop at its exec: %s", describeStatus(ws))
	}
	if err := unix.PtraceSetOptions(t.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("ptrace(PTRACE_SETOPTIONS): %w", err)
	}
	return nil
}

// wait waits for the VM's next stop or its exit.
func (t *tracee) wait() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait for the VM: %w", err)
		}
		if ws.Exited() || ws.Signaled() {
			t.exited = true
		}
		return ws, nil
	}
}

// detach lets the VM run, dropping the SIGTRAP it stopped with.
func (t *tracee) detach() error {
	if err := unix.PtraceDetach(t.pid); err != nil {
		return fmt.Errorf("ptrace(PTRACE_DETACH): %w", err)
	}
	return nil
}

// kill kills and reaps a VM that will not run.
func (t *tracee) kill() {
	if t.exited {
		return
	}
	unix.Kill(t.pid, unix.SIGKILL)
	for !t.exited {
		if _, err := t.wait(); err != nil {
			return
		}
	}
}

func describeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "it exited with code " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "it was killed by " + ws.Signal().String()
	case ws.Stopped():
		return "it stopped on " + ws.StopSignal().String()
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// lookup returns a getenv of env.
func lookup(env []string) func(string) string {
	return func(key string) string {
		v := ""
		for _, kv := range env {
			if val, ok := strings.CutPrefix(kv, key+"="); ok {
				v = val // the last wins, as in os/exec
			}
		}
		return v
	}
}
