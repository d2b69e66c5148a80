package main

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/vmre/vmre/launcher"
)

const runHead = `Usage: vmre run [flags] PLUGIN [ARGS...]

run launches the VM plugin PLUGIN (a path, or a name looked up in PATH) with
ARGS and waits for its handshake. It logs "handshake succeeded" with the VM's
pid, address, protocol version and the time taken, turns each line of the
VM's stdout and stderr into a log record, and serves the node mux on --listen
(HTTP/1.1 and h2c):

  GET /healthz      "ok" while vmre serves
  GET /v1/vms       the VMs as JSON: name, pid, addr, state, protocol_version,
                    started_at, handshake_ms, and how each one ended
  the engine        RuntimeService (the handshake), grpc.health.v1, reflection

On SIGINT or SIGTERM it stops the VM (SIGTERM, then SIGKILL after
--graceful-timeout; a second Ctrl-C kills it at once) and exits 0. A VM that
exits on its own ends run too: exit 0 if the VM exited 0, else 1.

Flags come before PLUGIN; everything after PLUGIN goes to the plugin as is.

Examples:
  vmre run ./bin/examplevm
  vmre run --listen 127.0.0.1:8080 --log-format json ./bin/examplevm --log-level debug
  vmre run --check --handshake-timeout 10s ./bin/examplevm
  vmre run --legacy --host-name odysseygo ./plugins/my-rpcchainvm-plugin
  vmre run --events - ./bin/examplevm | jq -c 'select(.event == "ready")'
  vmre run --name myvm node ./vm.js

`

// runFlags are run's flags.
type runFlags struct {
	launchFlags
	listen string
	check  bool
	events string
}

func runCommand(ctx context.Context, args []string, e env) int {
	var f runFlags
	fs := newFlagSet("run")
	f.launchFlags.register(fs, slog.LevelInfo)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "the `address` of the node mux (port 0 picks a free port)")
	fs.BoolVar(&f.check, "check", false,
		"exit 0 right after a successful handshake and a health probe of the VM, stopping the VM (a smoke test)")
	fs.StringVar(&f.events, "events", "",
		"write what happens to the VM as JSON lines to `file` (- for stdout): listening, started, engine_call, "+
			"handshake, ready, launch_failed, stop_stage, exited, output_dropped; for scripts, instead of reading the logs")
	if err := parseFlags(fs, runHead, exitCodesHelp, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() == 0 {
		return usagef(fs, e, "missing PLUGIN, the VM plugin to launch")
	}
	if code := f.validate(fs, e); code != exitOK {
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
	return f.run(sig, log, events, fs.Arg(0), fs.Args()[1:])
}

// run serves the node mux, launches the VM, and serves or checks it.
func (f *runFlags) run(sig *signals, log *slog.Logger, events *eventLog, plugin string, args []string) int {
	ln, addr, err := listen(f.listen)
	if err != nil {
		return fail(log, "vmre run failed", err)
	}
	n := startNode(ln, addr, f.hostName, log)
	defer func() {
		if err := n.close(); err != nil {
			log.Warn("node mux stopped with an error", "error", err)
		}
	}()
	log.Info("node mux listening", "addr", n.addr, "url", "http://"+n.addr)
	events.write(event{Event: "listening", Addr: n.addr})
	if !isLoopback(n.addr) {
		log.Warn("the node mux listens beyond loopback: anyone who can reach it can read /v1/vms", "listen", f.listen)
	}

	cfg := f.config(log)
	cfg.Hooks = events.hooks()
	cfg.Manager = n.vms // lists the VM in GET /v1/vms
	// The VM calls back the engine in the mux; a legacy launch handshakes on
	// a listener of its own instead.
	if !f.legacy {
		cfg.Engine, cfg.EngineAddr = n.engine, n.addr
	}
	l, err := launcher.New(cfg)
	if err != nil {
		return fail(log, "vmre run failed", err)
	}
	defer l.Close()
	rt, err := l.Launch(sig.first, exec.Command(plugin, args...), f.launchOptions()...)
	if err != nil {
		if sig.first.Err() != nil {
			err = context.Cause(sig.first)
			log.Warn("interrupted before the VM's handshake completed", "reason", err.Error())
			return exitFailure
		}
		return failHint(log, "vmre run failed", err, f.launchHint(err))
	}
	logHints(log, n.addr, rt, f.legacy)

	if f.check {
		return f.checkVM(sig, log, rt)
	}
	return f.serveVM(sig, log, rt, n)
}

// serveVM waits for a signal, the VM's own exit, or a failure of the mux.
func (f *runFlags) serveVM(sig *signals, log *slog.Logger, rt *launcher.Runtime, n *node) int {
	select {
	case <-sig.first.Done():
		log.Info("stopping the VM", "reason", context.Cause(sig.first).Error(), "graceful_timeout", f.gracefulTimeout)
		stopAndWait(sig, rt)
		return exitOK
	case <-rt.Done():
		exit, _ := rt.Exit()
		if exit.Success() {
			log.Info("the VM exited on its own", "exit", exit.String())
			return exitOK
		}
		log.Error("the VM exited on its own", "exit", exit.String(), "last_stderr", rt.LastStderr())
		return exitFailure
	case <-n.Done():
		log.Error("the node mux stopped; stopping the VM", "error", errorText(n.err))
		stopAndWait(sig, rt)
		return exitFailure
	}
}

// checkVM probes the VM's health, then stops it, and ends on a verdict.
func (f *runFlags) checkVM(sig *signals, log *slog.Logger, rt *launcher.Runtime) int {
	var failed []string
	res, err := probeVM(sig.first, rt.Status().Addr)
	if err != nil {
		log.Error("health probe failed", "probe", res.method, "protocol", res.protocol, "error", err.Error(), "elapsed", res.elapsed)
		failed = append(failed, "the health probe failed")
	} else {
		log.Info("health probe passed", "probe", res.method, "protocol", res.protocol, "status", res.status, "elapsed", res.elapsed)
	}
	log.Info("stopping the VM (--check)", "graceful_timeout", f.gracefulTimeout)
	if err := rt.Shutdown(sig.second); err != nil {
		log.Error("the VM did not stop gracefully within --graceful-timeout", "error", err.Error())
		failed = append(failed, "the VM did not stop gracefully")
	}
	if len(failed) > 0 {
		log.Error("check failed: "+strings.Join(failed, "; "), "exit_code", exitFailure)
		return exitFailure
	}
	log.Info("check passed")
	return exitOK
}

// stopAndWait stops the VM (a second signal kills it at once) and waits
// until it is reaped. The launcher logs how it ended.
func stopAndWait(sig *signals, rt *launcher.Runtime) launcher.Exit {
	rt.Stop(sig.second)
	<-rt.Done()
	exit, _ := rt.Exit()
	return exit
}

// fail logs err, which says what failed and what to do, and returns its
// exit code.
func fail(log *slog.Logger, msg string, err error) int { return failHint(log, msg, err, "") }

// failHint is fail with the CLI's hint, when it has one.
func failHint(log *slog.Logger, msg string, err error, hint string) int {
	code := exitCode(err)
	attrs := []any{"error", err.Error()}
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
