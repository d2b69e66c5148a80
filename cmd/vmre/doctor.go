package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

const doctorHead = `Usage: vmre doctor [flags] PLUGIN [ARGS...]

doctor launches the VM plugin PLUGIN once, with ARGS, and reports each phase
of the launch with its time:

  file       the file exists and is executable (and what kind of program it is)
  exec       the process starts
  dial-back  the VM calls the engine back (Initialize)
  version    the VM's protocol version is the host's
  server     the address the VM announced accepts connections (the launch
             connects to it before it answers the VM's Initialize)
  health     grpc.health.v1 Check says serving, asked over gRPC with h2c or,
             when the VM's server does not speak HTTP/2, over Connect with
             HTTP/1.1 (without a health service: the server answers HTTP)
  stop       the VM stops on SIGTERM within --graceful-timeout

With --sandbox it launches the VM under its sandbox policy, as vmre node
does (docs/SANDBOX.md): the default policy, or the VM's in --sandbox-policy
FILE (by --name, else the plugin's file name), at best-effort, and adds:

  sandbox    what the sandbox applied on this kernel, rule by rule
  denied     what the sandbox refused the VM during its start, its first
             call (the health check) and its stop, traced with strace -f
             (when strace is installed), and the policy that grants it

For a failure it says the likely cause and the fix. The report goes to
stdout; the launcher's and the VM's logs go to stderr (warnings and errors
only, unless --log-level says otherwise). The exit code is 0 for a healthy
VM, else the one ` + "`vmre run`" + ` would give for the same failure.

Flags come before PLUGIN; everything after PLUGIN goes to the plugin as is.

Examples:
  vmre doctor ./bin/examplevm
  vmre doctor ./bin/examplevm --protocol-version 9     # a VM of another version
  vmre doctor --handshake-timeout 2s ./my-plugin
  vmre doctor --legacy ./plugins/my-rpcchainvm-plugin
  vmre doctor --sandbox --sandbox-policy /etc/vmre/sandbox.json ./plugins/examplevm

`

// Phase names, in order.
const (
	phaseFile     = "file"
	phaseExec     = "exec"
	phaseDialBack = "dial-back"
	phaseVersion  = "version"
	phaseServer   = "server"
	phaseHealth   = "health"
	phaseStop     = "stop"
)

func doctorCommand(ctx context.Context, args []string, e env) int {
	var f launchFlags
	var sandboxed bool
	var policyFile string
	fs := newFlagSet("doctor")
	f.register(fs, slog.LevelWarn)
	f.registerName(fs)
	fs.BoolVar(&sandboxed, "sandbox", false,
		"launch the VM under its sandbox policy and list what the sandbox refused it (with strace -f, where installed)")
	fs.StringVar(&policyFile, "sandbox-policy", "", "with --sandbox: the VMs' sandbox policies, a JSON `file` (docs/SANDBOX.md)")
	if err := parseFlags(fs, doctorHead, exitCodesHelp, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() == 0 {
		return usagef(fs, e, "missing PLUGIN, the VM plugin to diagnose")
	}
	if code := f.validate(fs, e); code != exitOK {
		return code
	}
	d := &doctor{flags: &f, log: f.log.logger(e), plugin: fs.Arg(0), args: fs.Args()[1:]}
	switch {
	case policyFile != "" && !sandboxed:
		return usagef(fs, e, "--sandbox-policy needs --sandbox")
	case sandboxed:
		var file *sandbox.File
		if policyFile != "" {
			var err error
			if file, err = sandbox.ReadFile(policyFile); err != nil {
				return usagef(fs, e, "--sandbox-policy: %v", err)
			}
		}
		name := f.name
		if name == "" {
			name = filepath.Base(d.plugin)
		}
		sb, err := newSandboxRun(name, file)
		if err != nil {
			return fail(d.log, "vmre doctor failed", err)
		}
		defer sb.close()
		d.sandbox = sb
	}
	sig := catchSignals(ctx)
	defer sig.stop()
	r := d.run(sig)
	if d.sandbox != nil {
		d.addSandbox()
	}
	r.print(e.stdout)
	return r.code
}

// doctor diagnoses one plugin.
type doctor struct {
	flags  *launchFlags
	log    *slog.Logger
	plugin string
	args   []string
	info   pluginInfo
	report report
	// sandbox, with --sandbox, launches the VM under its policy.
	sandbox *sandboxRun
}

func (d *doctor) run(sig *signals) *report {
	d.report.command = strings.Join(append([]string{d.plugin}, d.args...), " ")
	if !d.checkFile() {
		return &d.report
	}
	cfg := d.flags.config(d.log)
	cmd := exec.Command(d.info.path, d.args...)
	if d.sandbox != nil {
		cfg = d.sandbox.config(cfg)
		var err error
		if cmd, err = d.sandbox.command(cmd, d.flags.engineKey); err != nil {
			d.report.failed(phase{name: phaseSandbox, detail: err.Error(),
				fix: "fix the policy (docs/SANDBOX.md, \"The policy file\")"}, exitCode(err), "the sandbox policy cannot be applied",
				phaseExec, phaseDialBack, phaseVersion, phaseServer, phaseHealth, phaseStop)
			return &d.report
		}
	}
	l, err := launcher.New(cfg)
	if err != nil {
		d.report.failed(phase{name: phaseExec, detail: err.Error()}, exitCode(err), "the launcher could not start",
			phaseDialBack, phaseVersion, phaseServer, phaseHealth, phaseStop)
		return &d.report
	}
	defer l.Close()

	trace := &launchTrace{}
	rt, err := l.Launch(sig.first, cmd, d.flags.launchOptions(launcher.WithName(d.vmName()), launcher.WithHooks(trace.hooks()))...)
	if !d.checkExec(err, trace) {
		return &d.report
	}
	if !d.checkHandshake(sig, rt, err, trace) {
		return &d.report
	}
	if d.sandbox != nil {
		d.sandbox.served(rt.Status().Addr)
	}
	defer func() {
		rt.Stop(context.Background()) // a no-op once stopped; kills at the graceful timeout
		<-rt.Done()
	}()
	if d.checkServer(sig, rt) {
		d.checkStop(sig, rt)
	}
	return &d.report
}

// vmName is the VM's name in logs: --name, else the plugin's file name
// (the command a sandboxed launch starts is the init step's, or strace).
func (d *doctor) vmName() string {
	if d.flags.name != "" {
		return d.flags.name
	}
	return filepath.Base(d.plugin)
}

// addSandbox adds the sandbox's phases once the VM has ended, and says in
// the verdict what the sandbox refused a VM that failed.
func (d *doctor) addSandbox() {
	for _, p := range d.sandbox.phases() {
		d.report.add(p)
		if p.name == phaseDenied && p.outcome == phaseWarn && d.report.code != exitOK {
			d.report.verdict += "; the sandbox refused the VM calls it made: see denied"
		}
	}
}

func (d *doctor) checkFile() bool {
	start := time.Now()
	info, err := inspectPlugin(d.plugin)
	d.info = info
	p := phase{name: phaseFile, elapsed: time.Since(start)}
	var problem *fileProblem
	if errors.As(err, &problem) {
		p.detail, p.fix = problem.reason, problem.fix
		d.report.failed(p, exitFailure, "the plugin file cannot run",
			phaseExec, phaseDialBack, phaseVersion, phaseServer, phaseHealth, phaseStop)
		return false
	}
	p.outcome, p.detail = phaseOK, info.describe()
	d.report.add(p)
	return true
}

// checkExec reports the exec phase: a launch that failed before the VM
// ran, or the start the launcher's hook told of.
func (d *doctor) checkExec(err error, trace *launchTrace) bool {
	var lerr *launcher.LaunchError
	if errors.As(err, &lerr) && (lerr.Phase == launcher.PhaseExec || lerr.Phase == launcher.PhaseConfig || lerr.Phase == launcher.PhaseListen) {
		p := phase{name: phaseExec, detail: lerr.Error()}
		p.cause, p.fix = execFailure(lerr, &d.info)
		d.report.failed(p, exitCode(err), "the plugin could not be started",
			phaseDialBack, phaseVersion, phaseServer, phaseHealth, phaseStop)
		return false
	}
	p := phase{name: phaseExec, outcome: phaseOK, detail: "started"}
	if started, _ := trace.get(); started != nil {
		p.elapsed = started.Exec
		p.detail = fmt.Sprintf("started as pid %d", started.Pid)
	}
	d.report.add(p)
	return true
}

// checkHandshake reports the dial-back and version phases.
func (d *doctor) checkHandshake(sig *signals, rt *launcher.Runtime, err error, trace *launchTrace) bool {
	rest := []string{phaseVersion, phaseServer, phaseHealth, phaseStop}
	dial := phase{name: phaseDialBack}
	_, call := trace.get()
	if call != nil {
		dial.elapsed = call.sinceStart
	}
	var lerr *launcher.LaunchError
	errors.As(err, &lerr)
	switch {
	case err == nil:
		dial.outcome, dial.detail = phaseOK, calledBack(call)
		if dial.elapsed == 0 {
			dial.elapsed = rt.HandshakeDuration()
		}
		d.report.add(dial)
		d.report.add(phase{name: phaseVersion, outcome: phaseOK,
			detail: fmt.Sprintf("protocol version %d, as the host", rt.ProtocolVersion())})
		return true

	case sig.first.Err() != nil:
		dial.detail = "interrupted: " + context.Cause(sig.first).Error()
		d.report.failed(dial, exitFailure, "interrupted", rest...)

	case lerr.Phase == launcher.PhaseVersion:
		var mismatch *vmre.VersionMismatchError
		errors.As(err, &mismatch)
		dial.outcome, dial.detail = phaseOK, calledBack(call)
		d.report.add(dial)
		v := phase{name: phaseVersion, detail: mismatch.Error(),
			cause: fmt.Sprintf("the VM speaks protocol version %d, the host version %d", mismatch.VMVersion, mismatch.HostVersion),
			fix:   mismatch.Hint()}
		d.report.failed(v, exitVersionMismatch, "protocol version mismatch", rest[1:]...)

	case lerr.Phase == launcher.PhaseReady:
		dial.outcome, dial.detail = phaseOK, calledBack(call)
		d.report.add(dial)
		version := "the host's"
		if call != nil {
			version = fmt.Sprintf("%d, as the host", call.ProtocolVersion)
		}
		d.report.add(phase{name: phaseVersion, outcome: phaseOK, detail: "protocol version " + version})
		p := phase{name: phaseServer, detail: lerr.Err.Error(),
			cause: "the VM called back before it listened, or announced another address than its listener's",
			fix:   "listen first, then call Initialize with the listener's own address (client.Serve does both)",
			lines: outputOf(lerr)}
		d.report.failed(p, exitCode(err), "the VM's server is not reachable", phaseHealth, phaseStop)

	case call != nil && !call.Accepted():
		dial.detail = fmt.Sprintf("the VM called back, but the engine refused it: %s: %s", call.Result(), connectMessage(call.Err))
		dial.cause = "the VM's Initialize request is not valid (see the engine's message); then: " + launchOutcome(lerr)
		dial.fix = "announce the VM's own listener as a loopback host:port and send the token of " + vmre.EngineTokenKey +
			" as Authorization: Bearer (docs/VM-AUTHORS.md)"
		dial.lines = outputOf(lerr)
		d.report.failed(dial, exitCode(err), "the engine refused the VM's handshake", rest...)

	case errors.Is(err, vmre.ErrHandshakeTimeout):
		dial.elapsed = lerr.Timeout
		dial.detail = fmt.Sprintf("the VM did not call back within %s", lerr.Timeout)
		dial.cause, dial.fix = d.neverCalledBack()
		dial.lines = outputOf(lerr)
		d.report.failed(dial, exitHandshakeTimeout, "the VM never called back", rest...)

	case lerr.Exit != nil:
		dial.elapsed = lerr.Exit.Ran
		dial.detail = "the VM exited before its handshake: " + lerr.Exit.String()
		dial.cause = "the VM crashed or refused to start before it called back; its last lines of output say why"
		dial.fix = "run it by hand with an engine: start `vmre serve`, export the lines it prints, run " +
			d.report.command + " and read its errors"
		dial.lines = outputOf(lerr)
		if len(dial.lines) == 0 {
			dial.cause = "the VM exited before it called back, and wrote nothing on stdout or stderr"
		}
		if hint := d.flags.legacyHint(d.info.path); hint != "" {
			dial.cause, dial.fix = "it is not started the way it expects", hint
		}
		d.report.failed(dial, exitVMExited, "the VM exited before its handshake", rest...)

	default:
		dial.detail = err.Error()
		d.report.failed(dial, exitCode(err), "the launch failed", rest...)
	}
	return false
}

// checkServer reports the server and health phases. The launch has
// connected to the VM's server already: it is reachable.
func (d *doctor) checkServer(sig *signals, rt *launcher.Runtime) bool {
	addr := rt.Status().Addr
	d.report.add(phase{name: phaseServer, outcome: phaseOK, detail: addr + " accepts connections"})

	res, err := rt.ProbeHealth(sig.first)
	h := phase{name: phaseHealth, elapsed: res.Elapsed}
	if err != nil {
		h.detail = err.Error()
		h.cause, h.fix = healthFailure(res, d.info.goVersion != "")
		d.report.failed(h, exitFailure, "the VM is not healthy", phaseStop)
		return false
	}
	h.outcome = phaseOK
	h.detail = res.Method + " Check: " + res.Status + " (" + res.Protocol + ")"
	if res.Method == launcher.HealthHTTP {
		h.detail = res.Status
	}
	d.report.add(h)
	return true
}

// healthFailure is the likely cause and fix of a failed health probe: in
// terms of Go libraries for a Go program, of protocols for any other.
func healthFailure(res launcher.Health, isGo bool) (cause, fix string) {
	switch {
	case res.Protocol == "":
		cause = "the VM's server answers neither gRPC over HTTP/2 without TLS (h2c) nor the Connect protocol over HTTP/1.1"
		fix = "serve the VM's RPCs on the address it announced, over h2c (gRPC) or HTTP/1.1 (Connect, JSON bodies); see docs/VM-AUTHORS.md"
	case isGo:
		cause = "the VM's server, which speaks " + res.Protocol + ", does not answer grpc.health.v1 Check with serving"
		fix = "serve grpc.health.v1 (connectrpc.com/grpchealth) and report the VM serving once it is ready"
	default:
		cause = "the VM's server, which speaks " + res.Protocol + ", does not answer grpc.health.v1.Health/Check with SERVING"
		fix = `answer POST /grpc.health.v1.Health/Check (service "") with {"status":"SERVING"} once the VM is ready; see docs/VM-AUTHORS.md`
	}
	return cause, fix
}

// checkStop stops the VM and reports how it ended.
func (d *doctor) checkStop(sig *signals, rt *launcher.Runtime) {
	start := time.Now()
	err := rt.Shutdown(sig.second) // a second Ctrl-C kills at once
	exit, _ := rt.Exit()
	p := phase{name: phaseStop, elapsed: time.Since(start), detail: exit.String()}
	if err != nil {
		p.cause = "the VM ignored SIGTERM for --graceful-timeout " + d.flags.gracefulTimeout.String()
		p.fix = "exit on SIGTERM (client.Serve does); an rpcchainvm plugin needs --legacy, which calls /vm.VM/Shutdown first"
		d.report.failed(p, exitFailure, "the VM does not stop gracefully")
		return
	}
	p.outcome = phaseOK
	d.report.add(p)
	d.report.code = exitOK
	d.report.verdict = "healthy: the VM starts, calls back, speaks the host's protocol version, serves, and stops gracefully"
}
