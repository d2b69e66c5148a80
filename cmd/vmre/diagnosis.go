package main

// What a failed phase of a launch likely means, and what to do about it.

import (
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// execFailure explains an exec error.
func execFailure(reason string, info *pluginInfo) (cause, fix string) {
	switch {
	case strings.Contains(reason, "exec format error"):
		return "the file is not a program for this system (another OS or architecture), or a script without a #! line",
			"build the plugin for this machine (GOOS/GOARCH), or start the script with a #! line"
	case strings.Contains(reason, "permission denied"):
		return "the file or a directory on its path is not executable by this user", "chmod +x " + info.path
	case strings.Contains(reason, "no such file"):
		return "the file, or the interpreter named by its #! line, does not exist", "check the path and the #! line"
	}
	return "the system refused to start the plugin", "run it by hand to see the error"
}

// calledBack describes the VM's Initialize call: from where, over which
// protocol.
func (d *doctor) calledBack(initialize *traceEvent) string {
	s := "the VM called back"
	if initialize == nil {
		return s
	}
	if peer := initialize.str("peer"); peer != "" {
		s += " from " + peer
	}
	if proto := initialize.str("protocol"); proto != "" {
		s += " over " + proto
	}
	return s
}

// neverCalledBack explains a handshake timeout from what the file is.
func (d *doctor) neverCalledBack() (cause, fix string) {
	key := d.flags.engineKey
	if key == "" {
		key = vmre.EngineAddressKey
		if d.flags.legacy {
			key = launcher.AvalancheEngineAddressKey
		}
	}
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
		"make the VM call client.Serve (" + vmreModule + "/client) at startup; for a plugin that reads another variable set --engine-key, " +
			"for an rpcchainvm plugin use --legacy; for a slow start raise --handshake-timeout"
}
