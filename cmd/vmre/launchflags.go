package main

import (
	"flag"
	"log/slog"
	"math"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// launchFlags are the flags of run and doctor that configure the launch.
type launchFlags struct {
	name             string
	protocolVersion  uint
	hostName         string
	engineKey        string
	legacy           bool
	handshakeTimeout time.Duration
	gracefulTimeout  time.Duration
	log              logFlags
}

// registerName adds --name, for the commands that launch one VM.
func (f *launchFlags) registerName(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "name", "",
		"the VM's `name` in logs, events and /v1/vms (default: the plugin's file name; set it for an interpreted "+
			"plugin such as `node vm.js`, which would be named after its interpreter)")
}

func (f *launchFlags) register(fs *flag.FlagSet, defaultLogLevel slog.Level) {
	fs.UintVar(&f.protocolVersion, "protocol-version", vmre.ProtocolVersion,
		"the protocol `version` the host speaks; a VM that sends another fails its handshake (exit 3)")
	fs.StringVar(&f.hostName, "host-name", vmre.DefaultHostName,
		"the host's `name` in handshake messages (odysseygo reproduces that node's messages)")
	fs.StringVar(&f.engineKey, "engine-key", "",
		"the environment `variable` that gives the VM the engine address (default "+
			vmre.EngineAddressKey+", or "+launcher.AvalancheEngineAddressKey+" with --legacy)")
	fs.BoolVar(&f.legacy, "legacy", false,
		"speak the rpcchainvm handshake (/vm.runtime.Runtime/Initialize over gRPC, no token) on a listener of the launch's own, "+
			"and call the VM's /vm.VM/Shutdown before SIGTERM")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", vmre.DefaultHandshakeTimeout,
		"how long to wait for the VM to call back (exit 4 after it)")
	fs.DurationVar(&f.gracefulTimeout, "graceful-timeout", vmre.DefaultGracefulTimeout,
		"how long a stopping VM has between SIGTERM and SIGKILL")
	f.log.register(fs, defaultLogLevel)
}

// validate reports what the flag package cannot: out-of-range values.
func (f *launchFlags) validate(fs *flag.FlagSet, e env) int {
	switch {
	case f.protocolVersion == 0:
		return usagef(fs, e, "--protocol-version 0: protocol versions start at 1")
	case f.protocolVersion > math.MaxUint32:
		return usagef(fs, e, "--protocol-version %d is out of range: the handshake carries a uint32", f.protocolVersion)
	}
	return checkTimeouts(fs, e, map[string]time.Duration{
		"handshake-timeout": f.handshakeTimeout,
		"graceful-timeout":  f.gracefulTimeout,
	})
}

// launchOptions are the options of one launch: --name, and extra.
func (f *launchFlags) launchOptions(extra ...launcher.LaunchOption) []launcher.LaunchOption {
	if f.name != "" {
		extra = append(extra, launcher.WithName(f.name))
	}
	return extra
}

// config is the launcher configuration of the flags. With --legacy the
// launcher calls /vm.VM/Shutdown before SIGTERM: vmre is then the VM's
// only client, so nobody else has called it.
func (f *launchFlags) config(log *slog.Logger) launcher.Config {
	return launcher.Config{
		ProtocolVersion:  f.protocolVersion,
		HostName:         f.hostName,
		Legacy:           f.legacy,
		EngineAddressKey: f.engineKey,
		LegacyShutdown:   f.legacy,
		HandshakeTimeout: f.handshakeTimeout,
		GracefulTimeout:  f.gracefulTimeout,
		Logger:           log,
	}
}
