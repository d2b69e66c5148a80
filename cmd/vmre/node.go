package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/supervise"
)

const nodeHead = `Usage: vmre node --plugin-dir DIR [flags]

node runs every VM of a plugin directory under supervision, and serves the
node mux (GET /v1/vms, GET /metrics, GET /healthz, the engine) on --listen.

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

SIGHUP reloads the directory, the aliases and the pins: new VMs start,
changed files run at the VM's next restart, removed files do not stop
running VMs. SIGINT or SIGTERM stops every VM in parallel (SIGTERM, then
SIGKILL after --graceful-timeout; a second Ctrl-C kills at once) and exits 0.

The launch flags (--protocol-version, --legacy, --handshake-timeout, ...)
apply to every VM.

Examples:
  vmre node --plugin-dir ./plugins
  vmre node --plugin-dir ./plugins --aliases aliases.json --pins pins.sha256 --require-pins --restart on-failure
  kill -HUP $(pgrep -x vmre)          # reload the directory
  curl -s http://127.0.0.1:PORT/v1/vms

`

// nodeFlags are node's flags.
type nodeFlags struct {
	launchFlags
	superviseFlags
	adminFlags
	pluginDir, aliases, pins string
	requirePins              bool
	listen                   string
	events                   string
}

func nodeCommand(ctx context.Context, args []string, e env) int {
	var f nodeFlags
	fs := newFlagSet("node")
	fs.StringVar(&f.pluginDir, "plugin-dir", "", "the `directory` of VM plugins (required)")
	fs.StringVar(&f.aliases, "aliases", "", "an aliases `file`: {\"<vmID>\": [\"alias\", ...]}")
	fs.StringVar(&f.pins, "pins", "", "a pins `file` in sha256sum's format: HEX  NAME per line")
	fs.BoolVar(&f.requirePins, "require-pins", false, "refuse every VM file that has no pin (needs --pins)")
	f.launchFlags.register(fs, slog.LevelInfo)
	f.superviseFlags.register(fs)
	f.adminFlags.register(fs)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "the `address` of the node mux (port 0 picks a free port)")
	fs.StringVar(&f.events, "events", "",
		"write what happens to the VMs as JSON lines to `file` (- for stdout): the events of run, and reload")
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
	case f.name != "":
		return usagef(fs, e, "--name names one VM: node names each VM by its file and its aliases")
	}
	if code := f.launchFlags.validate(fs, e); code != exitOK {
		return code
	}
	if code := f.superviseFlags.validate(fs, e); code != exitOK {
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
	return f.run(sig, log, events, e.getenv)
}

// run loads the directory, serves the node and supervises its VMs until a
// signal.
func (f *nodeFlags) run(sig *signals, log *slog.Logger, events *eventLog, getenv func(string) string) int {
	reg, report, err := registry.Load(registry.Config{
		Dir: f.pluginDir, Aliases: f.aliases, Pins: f.pins, RequirePins: f.requirePins,
		Logger: log.With(slog.String("component", "registry")),
	})
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	defer reg.Close()
	n := &nodeRegistry{reg: reg, policy: f.policy, events: events}
	h, err := startHost(hostConfig{
		launch: &f.launchFlags, admin: &f.adminFlags, listen: f.listen, backoff: f.backoff(), events: events, log: log, getenv: getenv,
		resolve: func(name string) (string, bool) {
			vm, ok := reg.Lookup(name)
			if !ok {
				return "", false
			}
			return vm.ID(), true
		},
		describe: func(name string) admin.Description {
			vm, ok := reg.Lookup(name)
			if !ok {
				return admin.Description{}
			}
			return admin.Description{Aliases: vm.Aliases(), Digest: vm.Digest().String(), Pinned: vm.Pinned()}
		},
		reload: n.reload,
	})
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	n.host, n.log = h, h.log
	h.serve()
	n.apply(report)
	log.Info("node serving", "plugin_dir", reg.Dir(), "vms", len(reg.VMs()), "refused", len(report.Failed))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if _, err := n.reload(); err != nil {
				log.Error("reload failed; the VMs run on as they were", "error", err.Error())
			}
		case <-h.changed:
		case <-sig.first.Done():
			log.Info("stopping the VMs", "reason", context.Cause(sig.first).Error(), "graceful_timeout", f.gracefulTimeout)
			h.close(sig.second)
			return exitOK
		case <-h.node.Done():
			log.Error("the node mux stopped; stopping the VMs", "error", errorText(h.node.err))
			h.close(sig.second)
			return exitFailure
		}
	}
}

// nodeRegistry puts what the registry loads under supervision.
type nodeRegistry struct {
	mu     sync.Mutex // one reload at a time: SIGHUP and the admin API
	reg    *registry.Registry
	host   *host
	policy supervise.Policy
	log    *slog.Logger
	events *eventLog
}

// reload reads the plugin directory again and acts on its report.
func (n *nodeRegistry) reload() (registry.Report, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	report, err := n.reg.Reload()
	if err != nil {
		return report, err
	}
	n.apply(report)
	return report, nil
}

// spec is the supervision of a registry VM. Its command fails at once when
// the VM cannot run (a pin refused after a reload, a closed VM).
func (n *nodeRegistry) spec(vm *registry.VM) supervise.Spec {
	return supervise.Spec{Name: vm.ID(), Policy: n.policy, Command: func() (*exec.Cmd, error) {
		cmd := vm.Command()
		if cmd.Err != nil {
			return nil, cmd.Err
		}
		return cmd, nil
	}}
}

// apply acts on a load's or a reload's report: it starts the VMs that are
// new, moves changed VMs to their new version at their next launch, and
// logs what failed and what was removed. A VM that left the directory keeps
// running until an operator stops it; the file of an old version stays
// open until the node stops, so that a launch in progress never loses it.
func (n *nodeRegistry) apply(report registry.Report) {
	changed := make(map[*registry.VM]bool)
	for _, c := range report.Changed {
		changed[c.New] = true
		if err := n.host.sup.Replace(n.spec(c.New)); err != nil {
			n.log.Error("cannot move the VM to its new version", "vm", c.New.ID(), "error", err.Error())
			continue
		}
		n.log.Warn("the VM's file changed: its next launch runs the new version (restart it to run it now)",
			"vm", c.New.ID(), "digest", c.New.Digest().String(), "was", c.Old.Digest().String())
	}
	var added []string
	for _, vm := range report.Added {
		if changed[vm] {
			continue
		}
		if err := n.host.sup.Add(n.spec(vm)); err != nil {
			n.log.Error("cannot supervise the VM", "vm", vm.ID(), "error", err.Error())
			continue
		}
		added = append(added, vm.ID())
	}
	for _, p := range report.Failed {
		attrs := []any{"entry", p.Entry, "kind", p.Kind.String(), "error", p.Err.Error()}
		if p.ID != "" {
			attrs = append(attrs, "vm", p.ID)
		}
		n.log.Warn("plugin directory entry refused; skipped", attrs...)
	}
	for _, vm := range report.Removed {
		n.log.Warn("the VM's file left the plugin directory; it runs on until stopped", "vm", vm.ID())
	}
	var unchanged, removed, failed, changedIDs []string
	for _, vm := range report.Unchanged {
		unchanged = append(unchanged, vm.ID())
	}
	for _, vm := range report.Removed {
		removed = append(removed, vm.ID())
	}
	for _, p := range report.Failed {
		failed = append(failed, p.Entry)
	}
	for _, c := range report.Changed {
		changedIDs = append(changedIDs, c.New.ID())
	}
	slices.Sort(added)
	n.log.Info("plugin directory loaded", "added", added, "changed", changedIDs, "unchanged", unchanged,
		"removed", removed, "failed", failed)
	n.events.write(event{Event: "reload", Added: added, Changed: changedIDs, Unchanged: unchanged, Removed: removed, Failed: failed})
}
