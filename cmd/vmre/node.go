package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/internal/tlspin"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/supervise"
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
	// Remote VMs (docs/REMOTE.md).
	engineListen, engineAdvertise string
	tlsCert, tlsKey, dataDir      string
	remotePing                    time.Duration
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
		"write what happens to the VMs as JSON lines to `file` (- for stdout): the events of run, reload and engine_listening")
	fs.StringVar(&f.engineListen, "engine-listen", "",
		"serve the engine over TLS on `address` too, for remote VMs declared by NAME.remote files (docs/REMOTE.md)")
	fs.StringVar(&f.engineAdvertise, "engine-advertise", "", "the `host:port` remote VMs dial (default: --engine-listen's address)")
	fs.StringVar(&f.tlsCert, "engine-tls-cert", "", "the engine's TLS certificate `file` (PEM; default: a self-signed one kept in --data-dir)")
	fs.StringVar(&f.tlsKey, "engine-tls-key", "", "the key `file` of --engine-tls-cert")
	fs.StringVar(&f.dataDir, "data-dir", "", "the node's `directory` for its certificate and the remote VMs' tokens (default $XDG_STATE_HOME/vmre, or ~/.local/state/vmre)")
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
	// Caught from the start: a SIGHUP's default action would end the node
	// without stopping its VMs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reg, report, err := registry.Load(registry.Config{
		Dir: f.pluginDir, Aliases: f.aliases, Pins: f.pins, RequirePins: f.requirePins,
		Logger: log.With(slog.String("component", "registry")),
	})
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	defer reg.Close()
	n := &nodeRegistry{reg: reg, policy: f.policy, events: events}
	etls, rem, err := f.remoteVMs(getenv, log)
	if err != nil {
		return fail(log, "vmre node failed", err)
	}
	var enrollments admin.Enrollments
	if rem != nil {
		enrollments, n.remotes = rem, rem
	}
	h, err := startHost(hostConfig{
		launch: &f.launchFlags, admin: &f.adminFlags, listen: f.listen, backoff: f.backoff(), events: events, log: log, getenv: getenv,
		engineTLS: etls, enrollments: enrollments,
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
	if rem != nil {
		rem.engine, rem.sup, rem.addr, rem.log = h.engine, h.sup, h.tlsAddr, h.log
	}
	h.serve()
	n.mu.Lock() // the admin service's Reload is served already
	n.apply(report)
	n.mu.Unlock()
	log.Info("node serving", "plugin_dir", reg.Dir(), "vms", len(reg.VMs()), "refused", len(report.Failed))

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

// remoteVMs prepares the engine's TLS listener and the enrollments of
// remote VMs, with --engine-listen; nil, nil without.
func (f *nodeFlags) remoteVMs(getenv func(string) string, log *slog.Logger) (*engineTLS, *remotes, error) {
	if f.engineListen == "" {
		return nil, nil, nil
	}
	dataDir := f.dataDir
	if dataDir == "" {
		dataDir = defaultDataDir(getenv)
	}
	var cert tls.Certificate
	var err error
	if f.tlsCert != "" {
		cert, err = tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	} else {
		hosts := []string{hostOfAddr(f.engineAdvertise), hostOfAddr(f.engineListen)}
		cert, err = tlspin.LoadOrCreate(filepath.Join(dataDir, "engine.crt"), filepath.Join(dataDir, "engine.key"), hosts)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the engine's TLS certificate: %w", vmre.ErrInvalidConfig, err)
	}
	etls := &engineTLS{listen: f.engineListen, advertise: f.engineAdvertise, cert: cert,
		pings: tlspin.Pings{Interval: f.remotePing, Timeout: f.remotePing}}
	rem := &remotes{dataDir: dataDir, certSum: tlspin.Fingerprint(cert.Certificate[0]), hostName: f.hostName, log: log}
	return etls, rem, nil
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

// hostOfAddr is the host of a host:port, or "".
func hostOfAddr(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

// nodeRegistry puts what the registry loads under supervision.
type nodeRegistry struct {
	mu      sync.Mutex // one reload at a time: SIGHUP and the admin API
	remotes *remotes   // nil without --engine-listen
	reg     *registry.Registry
	host    *host
	policy  supervise.Policy
	log     *slog.Logger
	events  *eventLog
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
	switch {
	case n.remotes != nil:
		n.remotes.apply(report.Remotes)
	case len(report.Remotes) > 0:
		n.log.Warn("the plugin directory declares remote VMs, which only a node with --engine-listen enrolls", "remotes", len(report.Remotes))
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
