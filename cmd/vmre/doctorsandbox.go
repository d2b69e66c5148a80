package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// Doctor's sandbox phases, after the others.
const (
	phaseSandbox = "sandbox"
	phaseDenied  = "denied"
)

// straceArgs trace what a sandbox refuses: paths, sockets, processes and
// signals, ioctls; strings long enough for a path; no signal lines.
var straceArgs = []string{"-f", "--seccomp-bpf", "-qq", "-s", "4096", "-e", "signal=none",
	"-e", "trace=%file,%network,%process,%signal,%ipc,ioctl"}

// sandboxRun is doctor's launch of a plugin under its sandbox policy,
// traced with strace -f where strace is installed: the launch runs the init
// step (the exec way), whose second exec is the VM's, and every call the
// VM made after it that failed with EACCES or EPERM is what the sandbox
// refused it (docs/SANDBOX.md, "Finding what a VM was denied").
type sandboxRun struct {
	name   string
	policy sandbox.Policy
	dir    string // data/ and tmp/ of the VM, the init step's link, the trace
	strace string // "" when strace is not installed
	sc     *sandbox.Cmd
	// port is the port of the VM's server, once it has announced it.
	port string
}

// served records the address the VM announced: client.Serve calls its own
// server there as it starts.
func (s *sandboxRun) served(addr string) {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		s.port = port
	}
}

// newSandboxRun prepares the sandboxed launch of the VM name, with its
// policy in file (nil: the default policy).
func newSandboxRun(name string, file *sandbox.File) (*sandboxRun, error) {
	s := &sandboxRun{name: name}
	if file != nil {
		s.policy = file.Policy(name)
	}
	s.strace, _ = exec.LookPath("strace")
	dir, err := os.MkdirTemp("", "vmre-doctor-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	for _, d := range []string{"data", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// config is doctor's launcher configuration for the sandboxed launch:
// without strace, the node's own way (sandbox.Start).
func (s *sandboxRun) config(cfg launcher.Config) launcher.Config {
	if s.strace == "" {
		cfg.Start = sandbox.Start
	}
	return cfg
}

// command is vm's command through the sandbox, under strace when there is
// one.
func (s *sandboxRun) command(vm *exec.Cmd, engineKey string) (*exec.Cmd, error) {
	o := sandbox.Options{Level: sandbox.BestEffort, DataDir: filepath.Join(s.dir, "data"), TempDir: filepath.Join(s.dir, "tmp"),
		EngineAddressKey: engineKey}
	if s.strace != "" {
		// strace runs a command by its path: a link named as the init
		// step is one (sandbox.InitName).
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find vmre's own program for the init step: %w", err)
		}
		o.Executable = filepath.Join(s.dir, sandbox.InitName)
		if err := os.Symlink(self, o.Executable); err != nil {
			return nil, err
		}
	}
	sc, err := sandbox.Command(vm, s.policy, o)
	if err != nil {
		return nil, err
	}
	s.sc = sc
	if s.strace == "" {
		return sc.Cmd, nil
	}
	cmd := *sc.Cmd
	cmd.Path = s.strace
	args := append([]string{"strace"}, straceArgs...)
	args = append(args, "-o", s.tracePath(), "--", o.Executable)
	cmd.Args = append(args, sc.Cmd.Args[1:]...)
	return &cmd, nil
}

func (s *sandboxRun) tracePath() string { return filepath.Join(s.dir, "trace") }

// phases are the sandbox's report and what the VM was refused, once the
// VM has ended.
func (s *sandboxRun) phases() []phase {
	if s.sc == nil {
		return nil
	}
	report, err := s.sc.Report()
	p := phase{name: phaseSandbox, outcome: phaseOK}
	switch {
	case err != nil:
		p.outcome, p.detail = phaseFail, err.Error()
		p.fix = "grant what the policy lacks, or fix the path it names (docs/SANDBOX.md, \"The policy file\")"
	case report != nil:
		p.detail = strings.TrimPrefix(report.String(), "sandbox ")
		if len(report.Missing()) > 0 {
			p.outcome = phaseWarn
			p.cause = "this kernel or node cannot apply the whole policy: vmre node --sandbox required would refuse the VM"
		}
	}
	return []phase{p, s.denied()}
}

// denied is the phase of what the VM was refused, from the trace.
func (s *sandboxRun) denied() phase {
	p := phase{name: phaseDenied}
	if s.strace == "" {
		p.outcome = phaseSkip
		p.detail = "strace is not installed: what the sandbox refused the VM cannot be listed"
		p.fix = "install strace (apt-get install strace) and run doctor again, or read the VM's own errors " +
			"and the kernel's audit log (docs/SANDBOX.md, \"Finding what a VM was denied\")"
		return p
	}
	f, err := os.Open(s.tracePath())
	if err != nil {
		p.outcome, p.detail = phaseFail, "no trace of the VM: "+err.Error()
		return p
	}
	defer f.Close()
	denials, err := parseTrace(f, func(path string) bool { _, err := os.Lstat(path); return err == nil })
	if err != nil {
		p.outcome, p.detail = phaseFail, err.Error()
		return p
	}
	for i, d := range denials {
		if d.key == "network.connect" && d.value == s.port {
			// No rule can grant a port the VM picks as it runs.
			denials[i].key, denials[i].value = "", ""
			denials[i].probe = "a call of the VM to its own server, as client.Serve warms it up while its handshake waits: " +
				"no policy names a port the VM picks as it runs, and it runs without (its first call a little slower)"
		}
	}
	if len(denials) == 0 {
		p.outcome = phaseOK
		p.detail = "nothing: the sandbox refused the VM no call during its start, first call and stop (strace -f)"
		return p
	}
	p.outcome = phaseOK
	probes := 0
	for _, d := range denials {
		if d.probe != "" {
			probes++
		}
	}
	if probes < len(denials) {
		p.outcome = phaseWarn
	}
	p.detail = fmt.Sprintf("the sandbox refused the VM %s during its start, first call and stop (strace -f)", plural(len(denials), "call"))
	switch {
	case probes == len(denials):
		p.detail += ", each a probe it runs without"
	case probes > 0:
		p.detail += fmt.Sprintf(", %d of them probes it runs without", probes)
	}
	p.header = "what the VM tried:"
	for _, d := range denials {
		p.lines = append(p.lines, d.String())
	}
	if grant := grantPolicy(s.name, denials); grant != "" {
		p.fix = "grant what the VM needs in the policy file (vmre node --sandbox-policy, or --sandbox-policy here): " + grant
	}
	return p
}

// close removes the VM's directories and the trace.
func (s *sandboxRun) close() {
	if s.sc != nil {
		s.sc.Close()
	}
	os.RemoveAll(s.dir)
}

// plural is n things, as "1 call" or "2 calls".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
