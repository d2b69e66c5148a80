package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

const runHead = `Usage: vmre run [flags] PLUGIN [ARGS...]

run launches the VM plugin PLUGIN (a path, or a name looked up in PATH) with
ARGS and waits for its handshake. It logs "handshake succeeded" with the VM's
pid, address, protocol version and the time taken, turns each line of the
VM's stdout and stderr into a log record, and serves the node mux on --listen
(HTTP/1.1 and h2c):

  GET /healthz      "ok" while vmre serves
  GET /v1/vms       the VMs as JSON ({"vms": [...]}, as vmre ps --json): name,
                    state, pid, addr, protocol_version, started_at, handshake,
                    last_exit (how its last attempt ended) and error
  the engine        RuntimeService (the handshake), grpc.health.v1, reflection

On SIGINT or SIGTERM it stops the VM (SIGTERM, then SIGKILL after
--graceful-timeout; a second Ctrl-C kills it at once) and exits 0. A VM that
exits on its own ends run too: exit 0 if the VM exited 0, else 1.

--sandbox LEVEL runs the VM under its sandbox policy as vmre node does
(docs/SANDBOX.md; default off): the default policy, or the VM's in
--sandbox-policy FILE, by --name. Its data and temporary directories are
made in a temporary directory, removed when run exits.

Flags come before PLUGIN; everything after PLUGIN goes to the plugin as is.

Examples:
  vmre run ./bin/examplevm
  vmre run --listen 127.0.0.1:8080 --log-format json ./bin/examplevm --log-level debug
  vmre run --check --handshake-timeout 10s ./bin/examplevm
  vmre run --legacy --host-name odysseygo ./plugins/my-rpcchainvm-plugin
  vmre run --events - ./bin/examplevm | jq -c 'select(.event == "ready")'
  vmre run --name myvm node ./vm.js
  vmre run --sandbox required ./bin/examplevm

`

// runFlags are run's flags.
type runFlags struct {
	launchFlags
	superviseFlags
	adminFlags
	sandboxFlags
	listen string
	check  bool
	events string
}

func runCommand(ctx context.Context, args []string, e env) int {
	var f runFlags
	fs := newFlagSet("run")
	f.launchFlags.register(fs, slog.LevelInfo)
	f.launchFlags.registerName(fs)
	f.superviseFlags.register(fs)
	f.adminFlags.register(fs)
	f.sandboxFlags.register(fs, sandbox.Off)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "the `address` of the node mux (port 0 picks a free port)")
	fs.BoolVar(&f.check, "check", false,
		"exit 0 right after a successful handshake and a health probe of the VM, stopping the VM (a smoke test)")
	fs.StringVar(&f.events, "events", "",
		"write what happens to the VM as JSON lines to `file` (- for stdout): listening, started, engine_call, "+
			"handshake, ready, launch_failed, stop_stage, exited, output_dropped, state; for scripts, instead of reading the logs")
	if err := parseFlags(fs, runHead, exitCodesHelp, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() == 0 {
		return usagef(fs, e, "missing PLUGIN, the VM plugin to launch")
	}
	if code := f.launchFlags.validate(fs, e); code != exitOK {
		return code
	}
	if code := f.superviseFlags.validate(fs, e); code != exitOK {
		return code
	}
	if f.check && f.policy != supervise.Never {
		return usagef(fs, e, "--check stops the VM after its probe: it takes no --restart")
	}
	if code := f.sandboxFlags.validate(fs, e); code != exitOK {
		return code
	}
	log := f.log.logger(e)
	events, err := openEventLog(f.events, e.stdout)
	if err != nil {
		return usagef(fs, e, "%v", err)
	}
	defer events.close()
	sig := catchSignals(ctx)
	defer sig.stop()
	return f.run(sig, log, events, e.getenv, fs.Arg(0), fs.Args()[1:])
}

// run serves the node mux, launches the VM under supervision, and serves
// or checks it.
func (f *runFlags) run(sig *signals, log *slog.Logger, events *eventLog, getenv func(string) string, plugin string, args []string) int {
	name := f.name
	if name == "" {
		name = filepath.Base(plugin)
	}
	lcfg := f.launchFlags.config(log)
	lcfg.Hooks = events.hooks()
	changed := make(chan struct{}, 1)
	cfg := node.Config{
		VMs:     []node.VM{{Name: name, Path: plugin, Args: args}},
		Name:    name,
		Restart: f.policy,
		Backoff: f.backoff(),
		Launch:  lcfg,
		Hooks:   events.nodeHooks(changed),
	}
	if err := f.sandboxFlags.apply(&cfg); err != nil {
		return fail(log, "vmre run failed", err)
	}
	if cfg.Sandbox != sandbox.Off {
		// The sandboxed VM's directories, for this run only.
		dir, err := os.MkdirTemp("", "vmre-run-")
		if err != nil {
			return fail(log, "vmre run failed", err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	n, addr, err := newNode(cfg, f.listen, &f.adminFlags, log, events, getenv)
	if err != nil {
		return fail(log, "vmre run failed", err)
	}
	return f.serveVM(sig, log, runNode(n, sig.second), addr, name, changed)
}

// serveVM follows the VM's states until it ends for good, a signal comes,
// or the mux fails; with --check it probes the VM once it runs.
func (f *runFlags) serveVM(sig *signals, log *slog.Logger, r *runningNode, addr, name string, changed <-chan struct{}) int {
	ready := false
	for {
		select {
		case <-changed:
			vm, _ := r.n.Get(name)
			switch vm.State {
			case supervise.StateRunning:
				if ready {
					continue
				}
				ready = true
				logHints(log, addr, name, vm.Addr, f.legacy)
				if f.check {
					code := f.checkVM(sig, log, r.n, vm)
					r.stop()
					return code
				}
			case supervise.StateFailed:
				r.stop()
				return failHint(log, "vmre run failed", vm.Err, f.launchHint(vm.Err))
			case supervise.StateExited:
				r.stop()
				return vmEnded(log, vm)
			}
		case <-sig.first.Done():
			r.stopBecause(context.Cause(sig.first)) // the node logs it
			// A launch that the signal abandoned left an error and no exit.
			if vm, _ := r.n.Get(name); vm.LastExit == nil && vm.Err != nil {
				log.Warn("interrupted before the VM's handshake completed", "reason", context.Cause(sig.first).Error())
				return exitFailure
			}
			return exitOK
		case <-r.done:
			log.Error("the node mux stopped; the VM is stopped", "error", errorText(r.stop()))
			return exitFailure
		}
	}
}

// vmEnded logs how a VM that its policy does not restart ended, and
// returns run's exit code: 0 when it exited 0.
func vmEnded(log *slog.Logger, vm supervise.VM) int {
	if vm.LastExit == nil {
		return exitFailure
	}
	if vm.LastExit.Success() {
		log.Info("the VM exited on its own", "exit", vm.LastExit.String())
		return exitOK
	}
	log.Error("the VM exited on its own", "exit", vm.LastExit.String()) // its last lines are records above
	return exitFailure
}

// checkVM probes the VM's health, then stops it, and ends on a verdict.
func (f *runFlags) checkVM(sig *signals, log *slog.Logger, n *node.Node, vm supervise.VM) int {
	var failed []string
	res, err := launcher.ProbeHealth(sig.first, vm.Addr)
	if err != nil {
		log.Error("health probe failed", "probe", res.Method, "protocol", res.Protocol, "error", err.Error(), "elapsed", res.Elapsed)
		failed = append(failed, "the health probe failed")
	} else {
		log.Info("health probe passed", "probe", res.Method, "protocol", res.Protocol, "status", res.Status, "elapsed", res.Elapsed)
	}
	log.Info("stopping the VM (--check)", "graceful_timeout", f.gracefulTimeout)
	if _, err := n.Stop(sig.second, vm.Name); err != nil {
		log.Error("stopping the VM failed", "error", err.Error())
		failed = append(failed, "the VM could not be stopped")
	} else if stopped, _ := n.Get(vm.Name); stopped.LastExit != nil && stopped.LastExit.Stage == launcher.StageKill {
		log.Error("the VM did not stop gracefully within --graceful-timeout", "exit", stopped.LastExit.String())
		failed = append(failed, "the VM did not stop gracefully")
	}
	if len(failed) > 0 {
		log.Error("check failed: "+strings.Join(failed, "; "), "exit_code", exitFailure)
		return exitFailure
	}
	log.Info("check passed")
	return exitOK
}

// fail logs err, which says what failed and what to do, and returns its
// exit code.
func fail(log *slog.Logger, msg string, err error) int { return failHint(log, msg, err, "") }

// failHint is fail with the CLI's hint, when it has one.
func failHint(log *slog.Logger, msg string, err error, hint string) int {
	code := exitCode(err)
	text := err.Error()
	if _, ok := errors.AsType[*launcher.LaunchError](err); ok {
		// The launcher's "launch failed" record has the whole error, the
		// VM's last stderr lines included; this summary keeps its first line.
		text, _, _ = strings.Cut(text, "\n")
	}
	attrs := []any{"error", text}
	if hint != "" {
		attrs = append(attrs, "hint", hint)
	}
	log.Error(msg, append(attrs, "exit_code", code)...)
	return code
}

func errorText(err error) string {
	if err == nil {
		return "it stopped serving"
	}
	return err.Error()
}
