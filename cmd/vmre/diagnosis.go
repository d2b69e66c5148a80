package main

// What a failed phase of a launch likely means, and what to do about it.
// These hints name the CLI's flags and commands; the library's errors say
// what happened in its own terms.

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// execFailure explains a launch that failed before the VM ran, once
// inspectPlugin found nothing wrong with the file: what the kernel refused
// of a file that looks executable.
func execFailure(err *launcher.LaunchError, info *pluginInfo) (cause, fix string) {
	switch {
	case err.Phase != launcher.PhaseExec:
		return "the launcher could not take the launch (" + err.Phase.String() + ")", "see the error above"
	case errors.Is(err, syscall.ENOEXEC) && info.script == "" && !info.binary:
		return "the file is not a program, and a script needs a #! line to run", "start the script with a #! line, such as #!/bin/sh"
	case errors.Is(err, syscall.ENOEXEC):
		return "the file is not a program for this system (another OS or architecture), or a script without a #! line",
			"build the plugin for this machine (GOOS/GOARCH), or start the script with a #! line"
	case errors.Is(err, fs.ErrPermission):
		return "the file is executable, but its file system is mounted noexec, or the interpreter of its #! line is not executable",
			"run the plugin from a file system mounted with exec, or chmod +x its interpreter"
	case errors.Is(err, fs.ErrNotExist):
		return "the file, or the interpreter named by its #! line, does not exist", "check the path and the #! line"
	}
	return "the system refused to start the plugin", "run it by hand to see the error"
}

// calledBack describes the VM's Initialize call: from where, over which
// protocol.
func calledBack(call *traceCall) string {
	s := "the VM called back"
	if call == nil {
		return s
	}
	if call.Peer != "" {
		s += " from " + call.Peer
	}
	if call.Protocol != "" {
		s += " over " + call.Protocol
	}
	return s
}

// connectMessage is the message of an engine's refusal, without its code.
func connectMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return fmt.Sprint(err)
}

// launchOutcome says how a launch that the engine refused ended.
func launchOutcome(err *launcher.LaunchError) string {
	switch {
	case err.Exit != nil:
		return "the VM exited: " + err.Exit.String()
	case errors.Is(err, vmre.ErrHandshakeTimeout):
		return fmt.Sprintf("no valid call came within %s", err.Timeout)
	}
	return err.Error()
}

// engineKey is the variable that carries the engine's address to the VM.
func (f *launchFlags) engineKeyName() string {
	switch {
	case f.engineKey != "":
		return f.engineKey
	case f.legacy:
		return launcher.AvalancheEngineAddressKey
	}
	return vmre.EngineAddressKey
}

// neverCalledBack explains a handshake timeout from what the file is.
func (d *doctor) neverCalledBack() (cause, fix string) {
	key := d.flags.engineKeyName()
	switch {
	case d.info.avalanche && !d.flags.legacy:
		return "the plugin is built with " + avalancheGoModule + ": an rpcchainvm plugin reads " +
				launcher.AvalancheEngineAddressKey + " and speaks the legacy handshake",
			"run with --legacy (add --engine-key " + launcher.OdysseyEngineAddressKey + " for an OdysseyGo plugin)"
	case d.info.goVersion != "" && !d.info.vmre && !d.info.avalanche:
		return "the program imports neither " + vmreModule + " nor " + avalancheGoModule +
				": unless it implements the handshake itself, it is not a VM plugin and nothing in it reads " + key,
			"launch the VM plugin itself, or make this program call client.Serve (" + vmreModule + "/client) at startup"
	}
	return "the VM never called the engine back: it does not read " + key + " (the engine address), " +
			"or it is not a VM plugin at all, or it needs longer than --handshake-timeout " + d.flags.handshakeTimeout.String() + " to start",
		"make the VM call the engine back at startup (client.Serve in Go; docs/VM-AUTHORS.md in any language); " +
			"for a plugin that reads another variable set --engine-key, for an rpcchainvm plugin use --legacy; for a slow start raise --handshake-timeout"
}

// launchHint is what the CLI adds to a failed launch's error: advice that
// names its own flags and commands.
func (f *launchFlags) launchHint(err error) string {
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) {
		return ""
	}
	switch {
	case lerr.Phase == launcher.PhaseHandshakeWait && errors.Is(err, vmre.ErrHandshakeTimeout):
		return "check that the plugin is a VM plugin and reads " + f.engineKeyName() +
			" (set --engine-key if it reads another variable, --legacy for an rpcchainvm plugin), " +
			"and that it starts within --handshake-timeout (raise it for a slow start); `vmre doctor PLUGIN` tells more"
	case lerr.Phase == launcher.PhaseHandshakeWait && lerr.Exit != nil:
		if lerr.Exit.Code == 127 { // /usr/bin/env (or a shell) did not find the program to run
			if _, err := inspectPlugin(lerr.Path); err != nil {
				return hintOf(err)
			}
		}
		if hint := f.legacyHint(lerr.Path); hint != "" {
			return hint
		}
		if len(outputOf(lerr)) == 0 {
			return "it wrote nothing to stdout or stderr; run it by hand under `vmre serve` to see what it does, or `vmre doctor PLUGIN`"
		}
		return "its last lines of output say why; `vmre doctor PLUGIN` tells more"
	case lerr.Phase == launcher.PhaseExec:
		info, err := inspectPlugin(lerr.Path)
		if err != nil {
			return hintOf(err)
		}
		cause, fix := execFailure(lerr, &info)
		return cause + ": " + fix
	}
	return ""
}

// legacyHint is the hint for a plugin that looks like an rpcchainvm
// plugin (see rpcchainvmKey) and was launched without --legacy, or with
// another engine key: such a plugin, started without the variable it
// reads, exits at once, often without a word.
func (f *launchFlags) legacyHint(path string) string {
	key := rpcchainvmKey(path)
	switch {
	case key == "":
		return ""
	case !f.legacy:
		return "it looks like an rpcchainvm plugin (it reads " + key + "), which speaks the legacy handshake: " +
			"run it with --legacy --engine-key " + key
	case f.engineKeyName() != key:
		return "it reads " + key + ", not " + f.engineKeyName() + ": run it with --engine-key " + key
	}
	return ""
}

// hintOf is the hint of inspectPlugin's finding: why the file cannot run,
// and what to do.
func hintOf(err error) string {
	if problem, ok := errors.AsType[*fileProblem](err); ok {
		return problem.reason + ": " + problem.fix
	}
	return err.Error()
}

// outputOf is a failed launch's last lines of output, marked by stream;
// its stderr lines when it has no others.
func outputOf(lerr *launcher.LaunchError) []string {
	if len(lerr.Output) > 0 {
		return lerr.Output
	}
	return lerr.Stderr
}
