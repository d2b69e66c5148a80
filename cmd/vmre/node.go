package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
	"github.com/vmre/vmre/tlspin"
)

const nodeHead = `Usage: vmre node --plugin-dir DIR [flags]

node runs every VM of a plugin directory under supervision, and serves the
node mux (GET /v1/vms, GET /metrics, GET /healthz, the engine, the admin
service of vmre ps/stop/start/restart/logs) on --listen.

The directory (AvalancheGo's --plugin-dir convention):
  each regular executable file is a VM; its ID is its name less an
  extension (timestampvm.exe is timestampvm); directories and dotfiles are
  skipped. A bad entry (not executable, a name collision, a duplicate
  alias, a refused pin) is logged with its reason and skipped: the others
  run.

--aliases FILE gives VMs more names, in AvalancheGo's format:
  {"timestampvm": ["tsvm", "timestamp"]}

--pins FILE lists the bytes allowed to run, in sha256sum's format:
  e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  timestampvm
  (make it with: cd DIR && sha256sum * > FILE). A file that does not match
  its pin is refused with both digests. On Linux a pinned file runs from a
  sealed copy of the bytes checked, so replacing the file afterwards runs
  nothing else. --require-pins refuses every file without a pin.

--restart POLICY says when a VM that ended is launched again: never (the
default), on-failure or always, after a backoff that doubles from
--backoff-initial (1s) to --backoff-max (60s) and starts over once a VM ran
for --backoff-reset (10m). A protocol version mismatch, a missing or
non-executable file, an exec format error and a refused pin are never
retried: GET /v1/vms says why the VM failed.

--liveness-interval (10s) and --liveness-failures (3) probe each running
VM of this host with the health probe of vmre run --check (grpc.health.v1,
or a plain HTTP request for a VM without it): a VM that fails that many
probes in a row is unhealthy (vmre ps says why), stopped gracefully
(SIGTERM, with SIGCONT for a VM stopped by SIGSTOP) and launched again as
--restart says. A VM paused (SIGSTOP, then SIGCONT) or stalled for less
than (failures - 1) x interval, 20s by default, survives; one that stays
silent is restarted within about failures x (interval + 5s), 45s by
default. --liveness-interval 0 turns the probes off.

vmre reload (or SIGHUP, as systemd's ExecReload= sends it) reloads the
directory, the aliases and the pins, and reconciles the node with them: new
VMs start; a VM whose file changed rolls out its new version; a VM whose
file left is stopped, with its graceful timeout, and forgotten
(--keep-removed keeps it running, shown removed); a remote VM whose
NAME.remote left is refused at once.

A rollout replaces the old run with the new version (--rollout-strategy
replace), or starts the new one beside it and switches once it is healthy
(start-first, for the VMs of --start-first). The new version is healthy
once it has handshaken, answered its health probe (the probe of vmre run
--check) and stayed up for --min-healthy (10s); if that has not happened
within --healthy-deadline (60s), or it exits first, the VM goes back to
the version before by itself (--no-auto-revert keeps the failed one) and
the failed version is not rolled out again until its bytes change (vmre
rollout NAME --force tries it anyway). vmre history NAME lists a VM's
versions and vmre rollback NAME goes back to one; they are kept in
--data-dir, with a copy of their bytes, across restarts of the node.

A VM stopped by vmre stop stays stopped across a restart of the node
(kept in --data-dir). SIGINT or SIGTERM stops every VM in parallel (SIGTERM, then
SIGKILL after --graceful-timeout; a second Ctrl-C kills at once) and exits 0.

--sandbox LEVEL runs each VM with only what its policy grants
(docs/SANDBOX.md): read and execute the system's directories and its own
file, write only DataDir/vms/NAME/data (VMRE_DATA_DIR) and its temporary
directory, TCP to the engine only, 1024/32768 open files, no core dumps,
no new privileges; Landlock, setrlimit and no_new_privs, no root needed.
best-effort (the default) applies what the kernel supports and logs what
it could not; required refuses to launch a VM whose policy the kernel
cannot apply, naming the missing feature; off runs VMs with the node's
rights. --sandbox-policy FILE grants more, per VM (JSON, docs/SANDBOX.md):
  {"vms": {"timestampvm": {"files": {"read": ["/opt/ts"]}, "network": {"connect": [443]}}}}

The launch flags (--protocol-version, --legacy, --handshake-timeout, ...)
apply to every VM.

Under systemd (Type=notify, a unit ships in deploy/systemd/), the node tells
the service manager READY=1 once its VMs are launched, RELOADING=1 and
READY=1 around a reload, STOPPING=1, its VMs' counts as STATUS=, and
WATCHDOG=1 when WatchdogSec= asks.

The clients (vmre ps, logs, stop, reload, ...) find the node by the file it
leaves in $XDG_RUNTIME_DIR/vmre; with several nodes, by --node-name, pid or
URL (--node, VMRE_NODE).

Examples:
  vmre node --plugin-dir ./plugins
  vmre node --plugin-dir ./plugins --aliases aliases.json --pins pins.sha256 --require-pins --restart on-failure
  vmre reload                         # reload the directory
  vmre ps                             # the VMs and their states

`

// nodeFlags are node's flags.
type nodeFlags struct {
	launchFlags
	superviseFlags
	rolloutFlags
	adminFlags
	sandboxFlags
	pluginDir, aliases, pins string
	requirePins, keepRemoved bool
	listen                   string
	events                   string
	nodeName                 string
	serving                  atomic.Bool // the VMs of the first load are supervised, the discovery file left
	// Remote VMs (docs/REMOTE.md).
	engineListen, engineAdvertise string
	tlsCert, tlsKey, dataDir      string
	remotePing                    time.Duration
	livenessInterval              time.Duration
	livenessFailures              int
	backlogKiB                    int
}

func nodeCommand(ctx context.Context, args []string, e env) int {
	var f nodeFlags
	fs := newFlagSet("node")
	fs.StringVar(&f.pluginDir, "plugin-dir", "", "the `directory` of VM plugins (required)")
	fs.StringVar(&f.aliases, "aliases", "", "an aliases `file`: {\"<vmID>\": [\"alias\", ...]}")
	fs.StringVar(&f.pins, "pins", "", "a pins `file` in sha256sum's format: HEX  NAME per line")
	fs.BoolVar(&f.requirePins, "require-pins", false, "refuse every VM file that has no pin (needs --pins)")
	fs.BoolVar(&f.keepRemoved, "keep-removed", false,
		"keep a VM whose file left the plugin directory running (shown removed) until it is stopped, instead of stopping it at the reload")
	f.sandboxFlags.register(fs, sandbox.BestEffort)
	f.launchFlags.register(fs, slog.LevelInfo)
	f.superviseFlags.register(fs)
	f.rolloutFlags.register(fs)
	fs.DurationVar(&f.livenessInterval, "liveness-interval", supervise.DefaultLivenessInterval,
		"probe each running VM's health this often; a VM that fails --liveness-failures probes in a row is restarted (0: no probes)")
	fs.IntVar(&f.livenessFailures, "liveness-failures", supervise.DefaultLivenessFailures,
		"the failed probes in a row that make a VM unhealthy; a pause shorter than (this - 1) x --liveness-interval is survived")
	f.adminFlags.register(fs)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "the `address` of the node mux (port 0 picks a free port)")
	fs.StringVar(&f.nodeName, "node-name", "",
		"the node's `name`, by which the clients choose it (--node NAME, VMRE_NODE=NAME) when several run (default: the plugin directory's name)")
	fs.StringVar(&f.events, "events", "",
		"write what happens to the VMs as JSON lines to `file` (- for stdout): the events of run, reload and engine_listening")
	fs.StringVar(&f.engineListen, "engine-listen", "",
		"serve the engine over TLS on `address` too, for remote VMs declared by NAME.remote files (docs/REMOTE.md)")
	fs.StringVar(&f.engineAdvertise, "engine-advertise", "", "the `host:port` remote VMs dial (default: --engine-listen's address)")
	fs.StringVar(&f.tlsCert, "engine-tls-cert", "", "the engine's TLS certificate `file` (PEM; default: a self-signed one kept in --data-dir)")
	fs.StringVar(&f.tlsKey, "engine-tls-key", "", "the key `file` of --engine-tls-cert")
	fs.StringVar(&f.dataDir, "data-dir", "", "the node's `directory` for its certificate, the remote VMs' tokens, the VMs stopped by an operator and the VMs' versions "+
		"(default $XDG_STATE_HOME/vmre, or ~/.local/state/vmre)")
	fs.IntVar(&f.backlogKiB, "log-backlog-kib", admin.DefaultBacklogBytes>>10,
		"keep the last `KiB` of each VM's log records, for vmre logs (when full, they hold about 1.7 times that in memory)")
	fs.DurationVar(&f.remotePing, "remote-ping", tlspin.DefaultPings.Interval,
		"ping a remote VM's silent connection after this long, and call it lost when the ping goes unanswered as long again")
	if err := parseFlags(fs, nodeHead, exitCodesHelp, args, e); err != nil {
		return flagExit(err)
	}
	switch {
	case fs.NArg() > 0:
		return usagef(fs, e, "unexpected argument %q: node runs the VMs of --plugin-dir", fs.Arg(0))
	case f.pluginDir == "":
		return usagef(fs, e, "missing --plugin-dir, the directory of VM plugins")
	case f.requirePins && f.pins == "":
		return usagef(fs, e, "--require-pins needs --pins FILE")
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return usagef(fs, e, "--engine-tls-cert and --engine-tls-key go together")
	case f.remotePing <= 0:
		return usagef(fs, e, "--remote-ping %s: give a positive duration, such as 5s", f.remotePing)
	case f.livenessInterval < 0:
		return usagef(fs, e, "--liveness-interval %s: give a positive duration, such as 10s, or 0 for no probes", f.livenessInterval)
	case f.livenessFailures < 1 && f.livenessInterval > 0:
		return usagef(fs, e, "--liveness-failures %d: give 1 or more (or --liveness-interval 0 for no probes)", f.livenessFailures)
	case f.backlogKiB < 1 || f.backlogKiB > 1<<20:
		return usagef(fs, e, "--log-backlog-kib %d: give a size from 1 to %d KiB", f.backlogKiB, 1<<20)
	}
	if code := f.launchFlags.validate(fs, e); code != exitOK {
		return code
	}
	if code := f.superviseFlags.validate(fs, e); code != exitOK {
		return code
	}
	if code := f.rolloutFlags.validate(fs, e); code != exitOK {
		return code
	}
	if code := f.sandboxFlags.validate(fs, e); code != exitOK {
		return code
	}
	if err := f.checkFiles(); err != nil {
		return usagef(fs, e, "%v", err)
	}
	log := f.log.logger(e)
	events, err := openEventLog(f.events, e.stdout)
	if err != nil {
		return usagef(fs, e, "%v", err)
	}
	defer events.close()
	sig := catchSignals(ctx)
	defer sig.stop()
	return f.run(sig, log, events, e.getenv)
}

// checkFiles refuses, before anything starts, a plugin directory that
// cannot be listed and an aliases or pins file that cannot be read: a
// node that started without them would run what they were meant to name
// or forbid.
func (f *nodeFlags) checkFiles() error {
	if _, err := os.ReadDir(f.pluginDir); err != nil {
		return fmt.Errorf("--plugin-dir: %w", err)
	}
	for _, file := range []struct{ flag, path string }{{"--aliases", f.aliases}, {"--pins", f.pins}} {
		if file.path == "" {
			continue
		}
		fh, err := os.Open(file.path)
		if err != nil {
			return fmt.Errorf("%s: %w", file.flag, err)
		}
		st, err := fh.Stat()
		fh.Close()
		if err == nil && st.IsDir() {
			return fmt.Errorf("%s %s is a directory: give the file", file.flag, file.path)
		}
	}
	return nil
}

// run serves the node and supervises the VMs of its plugin directory
// until a signal.
func (f *nodeFlags) run(sig *signals, log *slog.Logger, events *eventLog, getenv func(string) string) int {
	// Caught from the start: a SIGHUP's default action would end the node
	// without stopping its VMs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := make(chan struct{}, 1)
	cfg, err := f.config(log, events, getenv, changed)
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	n, _, err := newNode(cfg, f.listen, &f.adminFlags, log, events, getenv)
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	sd := newServiceManager(getenv, log, &f.serving)
	r := runNode(n, sig.second)
	first := sig.first.Done()
	watchdog := sd.watchdog()
	hints := hinted{}
	for {
		select {
		case <-hup:
			sd.reloading()
			if _, err := n.Reload(context.Background()); err != nil {
				log.Error("reload failed; the VMs run on as they were", "error", err.Error())
			}
			sd.reloaded(n)
		case <-changed:
			sd.changed(n)
			f.hintFailures(log, events, n, hints)
		case <-watchdog.C():
			sd.alive()
		case <-first:
			first = nil
			sd.stopping(n)
			r.cancel(context.Cause(sig.first)) // the node logs it
		case <-r.done:
			watchdog.Stop()
			if err := r.stop(); err != nil {
				return fail(log, "vmre node failed", err)
			}
			return exitOK
		}
	}
}

// config is the node's configuration of the flags. changed gets a value
// after each change of a VM's state, and after each load of the plugin
// directory.
func (f *nodeFlags) config(log *slog.Logger, events *eventLog, getenv func(string) string, changed chan<- struct{}) (node.Config, error) {
	lcfg := f.launchFlags.config(log)
	lcfg.Hooks = events.hooks()
	name := f.nodeName
	if name == "" {
		if abs, err := filepath.Abs(f.pluginDir); err == nil {
			name = filepath.Base(abs)
		}
	}
	cfg := node.Config{
		PluginDir: f.pluginDir, Aliases: f.aliases, Pins: f.pins, RequirePins: f.requirePins, KeepRemoved: f.keepRemoved,
		Restart: f.policy, Backoff: f.backoff(), Rollout: f.rolloutFlags.config(), Launch: lcfg,
		Liveness: supervise.Liveness{Interval: f.livenessInterval, Failures: f.livenessFailures},
		DataDir:  f.dataDir, Name: name, LogBacklogBytes: f.backlogKiB << 10,
		Hooks: events.nodeHooks(changed),
	}
	serving := cfg.Hooks.Serving
	cfg.Hooks.Serving = func() {
		f.serving.Store(true) // before changed hears of it
		serving()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = defaultDataDir(getenv)
	}
	if err := f.sandboxFlags.apply(&cfg); err != nil {
		return node.Config{}, err
	}
	if f.engineListen != "" {
		cfg.Remote = node.RemoteConfig{Listen: f.engineListen, Advertise: f.engineAdvertise,
			Pings:     server.Pings{Interval: f.remotePing, Timeout: f.remotePing},
			TokenHint: remoteTokenHint}
		if f.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return node.Config{}, fmt.Errorf("%w: --engine-tls-cert: %w", vmre.ErrInvalidConfig, err)
			}
			cfg.Remote.Certificate = &cert
		}
	}
	return cfg, nil
}

// defaultDataDir is $XDG_STATE_HOME/vmre, or ~/.local/state/vmre.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "vmre")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "vmre")
	}
	return filepath.Join(os.TempDir(), "vmre-state")
}

// hinted are the failures of VMs whose hint the node has logged, by VM.
type hinted map[string]string

// hintFailures logs, once per failure, and writes as a hint event, the
// CLI's hint for a VM that failed: what its file tells (built for another machine, an rpcchainvm
// plugin run without --legacy, ...) and what to do.
func (f *nodeFlags) hintFailures(log *slog.Logger, events *eventLog, n *node.Node, seen hinted) {
	for _, vm := range n.List() {
		if vm.State != supervise.StateFailed || vm.Err == nil {
			delete(seen, vm.Name)
			continue
		}
		if seen[vm.Name] == vm.Err.Error() {
			continue
		}
		seen[vm.Name] = vm.Err.Error()
		if _, ok := errors.AsType[*launcher.LaunchError](vm.Err); !ok {
			continue
		}
		if hint := f.launchHint(vm.Err); hint != "" {
			log.Warn("the VM failed; how to fix it", "vm", vm.Name, "hint", hint)
			events.write(event{Event: "hint", VM: vm.Name, Reason: hint})
		}
	}
}
