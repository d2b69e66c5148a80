package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/vmre/vmre/internal/execdiag"
)

// Exit codes of an init step that did not exec its VM.
const (
	exitRefused  = 126 // the policy could not be applied (Required, a missing path)
	exitNoExec   = 127 // the exec of the VM failed
	exitBadUsage = 125 // the init step's arguments are not the node's
)

// Init runs the sandbox's init step when this process is one, and returns
// at once otherwise. Call it first in main:
//
//	func main() {
//		sandbox.Init()
//		...
//	}
//
// When the node starts the init step (Command), this process applies the
// VM's policy to itself (resource limits, user, no new privileges,
// Landlock), sends the node its report, and execs the VM: it never returns
// then. The package's own initialisation does the same, as early as Go's
// order of package initialisation lets it (the packages that do not depend
// on this one may come later, and a large node spends milliseconds in
// them), so Init has nothing left to do in a program that links the
// package; call it all the same, to make the init step plain in main. Test
// binaries that launch sandboxed VMs call it in TestMain.
func Init() {
	if isInitStep() {
		os.Exit(runInit(os.Args[1], os.Args[2:]))
	}
}

// init runs the init step before the rest of the program's initialisation
// where Go's order allows: see Init.
func init() { Init() }

// isInitStep tells whether this process is an init step that Command
// started: its argv[0] is InitName, or a path that ends in a link of that
// name, as a program such as strace, which runs a command by its path,
// gives it (vmre doctor --sandbox does so).
func isInitStep() bool {
	return len(os.Args) >= 3 && (os.Args[0] == InitName || strings.HasSuffix(os.Args[0], "/"+InitName))
}

// runInit is the init step: it applies s and execs the VM with argv, or
// returns the exit code of its failure.
func runInit(specJSON string, argv []string) int {
	// Everything from here to the exec happens on this thread: the
	// limits, the user, no_new_privs and Landlock are set on it, and the
	// exec gives them to the VM.
	runtime.LockOSThread()
	var s spec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		fmt.Fprintf(os.Stderr, "%s: this program runs the sandbox's init step for a node; its arguments are not a node's: %v\n", InitName, err)
		return exitBadUsage
	}
	// Our descriptors are the VM's to lose at exec.
	for _, fd := range []int{s.Report, s.Image} {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	send := func(m message) {
		if s.Report < 0 {
			return
		}
		b, _ := json.Marshal(m)
		writeAll(s.Report, append(b, '\n'))
	}
	fail := func(code int, rep *Report, err error) int {
		m := message{Report: rep, Error: err.Error()}
		var refused *RefusedError
		if errors.As(err, &refused) {
			m.Refused = refused.Missing
		}
		send(m)
		fmt.Fprintf(os.Stderr, "%s: %v\n", InitName, err)
		return code
	}

	p, err := makePlan(&s, processFacts(os.Getenv))
	if p != nil {
		p.report.Method = MethodExec
	}
	if err == nil {
		err = p.refused()
	}
	if err != nil {
		return fail(exitRefused, reportOf(p), err)
	}
	rulesetFD, flags, err := ruleset(p, procSelf) // this process's pid is the VM's
	if err != nil {
		return fail(exitRefused, &p.report, err)
	}
	if err := apply(&s, p); err != nil {
		return fail(exitRefused, &p.report, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(exitRefused, &p.report, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err))
	}
	if rulesetFD >= 0 {
		if err := ll.LandlockRestrictSelf(rulesetFD, flags); err != nil {
			return fail(exitRefused, &p.report, fmt.Errorf("landlock_restrict_self: %w", err))
		}
		unix.Close(rulesetFD)
	}
	send(message{Report: &p.report})

	err = syscall.Exec(s.Path, argv, vmEnv(os.Environ(), s.Env))
	msg := execFailure(s.Path, argv, err)
	send(message{Error: msg})
	fmt.Fprintf(os.Stderr, "%s: %s\n", InitName, msg)
	return exitNoExec
}

// execFailure says why the exec of the VM failed: the file as its
// operators name it (a sealed copy runs from /proc/self/fd/N, its argv[0]
// names the file), and what the file tells of why (execdiag).
func execFailure(path string, argv []string, err error) string {
	name := path
	if strings.HasPrefix(path, "/proc/self/fd/") && len(argv) > 0 && filepath.IsAbs(argv[0]) {
		name = argv[0]
	}
	msg := fmt.Sprintf("exec %s: %v", name, err)
	if why := execdiag.Explain(path, err); why != "" {
		msg += ": " + why
	}
	return msg
}

func reportOf(p *plan) *Report {
	if p == nil {
		return nil
	}
	return &p.report
}

// procSelf is the grant of the VM's own /proc directory.
const procSelf = "/proc/self"

// ruleset makes the Landlock ruleset of p, or returns -1 when p restricts
// nothing. self names the VM's own /proc directory, which the grant of
// procSelf gives: procSelf itself in the VM's process (the init step's pid
// is the VM's), or "" to leave it out for the node to add once the VM's
// pid is known (addSelf).
func ruleset(p *plan, self string) (int, uint32, error) {
	cfg := p.cfg
	if cfg.HandledAccessFS == 0 && cfg.HandledAccessNet == 0 && cfg.Scoped == 0 {
		return -1, 0, nil
	}
	rules := make([]landlock.Rule, 0, len(p.files)+len(p.net))
	for _, g := range p.files {
		if g.Path == procSelf {
			if self == "" {
				continue
			}
			g.Path = self
		}
		var st unix.Stat_t
		if err := unix.Stat(g.Path, &st); err != nil {
			if g.Optional && errors.Is(err, unix.ENOENT) {
				continue
			}
			return -1, 0, fmt.Errorf("grant %s: %w", g.Path, err)
		}
		set := g.set
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			set &= fileRights // a file takes no directory rights
		}
		if set != 0 {
			rules = append(rules, landlock.PathAccess(set, g.Path))
		}
	}
	rules = append(rules, p.net...)
	return cfg.NewRulesetFD(rules...)
}

// addPathRule adds to a ruleset the rights set beneath the directory fd
// names (an O_PATH descriptor).
func addPathRule(rulesetFD, fd int, set landlock.AccessFSSet) error {
	attr := ll.PathBeneathAttr{AllowedAccess: uint64(set), ParentFd: fd}
	if err := ll.LandlockAddPathBeneathRule(rulesetFD, &attr, 0); err != nil {
		return fmt.Errorf("landlock_add_rule: %w", err)
	}
	return nil
}

// fileRights are the Landlock rights that apply to a file.
const fileRights = landlock.AccessFSSet(ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
	ll.AccessFSTruncate | ll.AccessFSIoctlDev)

// apply sets p's limits and user on this thread, keeping the parent-death
// signal that a change of user clears.
func apply(s *spec, p *plan) error {
	if p.uid >= 0 || p.gid >= 0 {
		for _, dir := range s.Chown {
			if err := unix.Chown(dir, p.uid, p.gid); err != nil {
				return fmt.Errorf("give %s to uid %d gid %d: %w", dir, p.uid, p.gid, err)
			}
		}
	}
	for _, l := range p.limits {
		rl := unix.Rlimit{Cur: l.Limit.Soft, Max: l.Limit.Hard}
		if err := unix.Setrlimit(resources[l.Name], &rl); err != nil {
			return fmt.Errorf("setrlimit %s %s: %w", l.Name, l.Limit, err)
		}
	}
	if p.uid < 0 && p.gid < 0 {
		return nil
	}
	var deathSig int
	unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&deathSig)), 0, 0, 0)
	parent := unix.Getppid()
	// Raw calls, on this thread alone: the exec that follows gives the VM
	// this thread's credentials, and the process's other threads end.
	if p.gid >= 0 {
		gid := uintptr(p.gid)
		groups := [1]uint32{uint32(p.gid)}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
			return fmt.Errorf("setgroups %d: %w", p.gid, e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, gid, gid, gid); e != 0 {
			return fmt.Errorf("setresgid %d: %w", p.gid, e)
		}
	}
	if p.uid >= 0 {
		uid := uintptr(p.uid)
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uid, uid, uid); e != 0 {
			return fmt.Errorf("setresuid %d: %w", p.uid, e)
		}
	}
	if deathSig != 0 {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(deathSig), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
		}
		if unix.Getppid() != parent {
			return errors.New("the node exited while the sandbox was being set up")
		}
	}
	return nil
}

// vmEnv is env with add's variables in place of env's of the same name.
func vmEnv(env, add []string) []string {
	if len(add) == 0 {
		return env
	}
	names := make(map[string]bool, len(add))
	for _, kv := range add {
		name, _, _ := strings.Cut(kv, "=")
		names[name] = true
	}
	out := make([]string, 0, len(env)+len(add))
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); !names[name] {
			out = append(out, kv)
		}
	}
	return append(out, add...)
}

// writeAll writes b to fd, a pipe the node reads once the init step ends.
func writeAll(fd int, b []byte) {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		b = b[n:]
	}
}
