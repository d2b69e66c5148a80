package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/oklog/run"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
	"github.com/vmre/vmre/tlspin"
)

// ErrNotRunning is the error of a Reload outside Run.
var ErrNotRunning = errors.New("the node is not running")

// Node is a vmre node: its VMs, their engine, their supervision, and the
// HTTP handler of it all. Make one with New and run it with Run, once.
type Node struct {
	cfg      Config // with defaults: Logger, Addr
	log      *slog.Logger
	logs     *admin.Logs
	reg      *registry.Registry // nil without a PluginDir
	initial  registry.Report
	engine   *server.Engine
	metrics  *metrics.Metrics
	sup      *supervise.Supervisor
	admin    *admin.Service
	handler  http.Handler
	cert     *tls.Certificate // the TLS engine's, with Remote
	remotes  *remotes         // nil without Remote
	stops    *stopRecord
	history  *history  // the VMs' versions
	store    *store    // the copies of their bytes
	running  *running  // the record of the running VMs; nil without a DataDir
	launches *launches // the supervisor's launcher

	reloadMu sync.Mutex      // one reconciliation at a time
	refused  map[string]bool // the VMs whose entry the last load refused, under reloadMu

	kickFollow chan struct{} // the follow-up actor has VMs to reconcile (dirty)
	kickKeep   chan struct{} // the keeper has copies to keep (keeps)

	// The keeper's clock: time.Now and time.After (tests set theirs).
	now   func() time.Time
	after func(time.Duration) <-chan time.Time

	mu        sync.Mutex
	phase     phase
	entries   map[string]*entry          // every VM, by name
	sandboxes map[string]*sandbox.Report // the last launch's, by VM name
	dirty     map[string]bool            // VMs to reconcile again, after their rollouts
	keeps     []keepJob                  // copies of versions to keep, in order
	lastKeep  time.Time                  // when the last copy was queued (keepLater)
	waiters   map[string][]chan supervise.RolloutStatus
	ended     map[string]supervise.RolloutStatus // each VM's last rollout that ended
	kill      context.CancelCauseFunc
	tlsAddr   string
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopping
	phaseDone
)

// New makes a node of cfg: it loads the plugin directory (an entry that
// cannot load is reported and skipped) and the engine's certificate, and
// builds the node's parts. Nothing runs, listens or launches until Run.
// New's error is for a bad Config, a plugin directory that cannot be
// listed, or a certificate that cannot be loaded or made.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, entries: make(map[string]*entry), dirty: make(map[string]bool), refused: make(map[string]bool),
		waiters: make(map[string][]chan supervise.RolloutStatus), ended: make(map[string]supervise.RolloutStatus),
		kickFollow: make(chan struct{}, 1), kickKeep: make(chan struct{}, 1), now: time.Now, after: time.After}
	n.logs = admin.NewLogs(cfg.LogBacklogBytes)
	n.log = slog.New(n.logs.Handler(cfg.Logger.Handler())) // keeps each VM's recent records for TailLogs
	stops, err := loadStops(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.stops = stops
	if n.history, err = loadHistory(cfg.DataDir, cfg.Rollout.Keep); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		n.running = newRunning(cfg.DataDir, n.log)
	}
	if cfg.Remote.Listen != "" {
		if n.cert, err = engineCertificate(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.PluginDir != "" {
		if n.store, err = openStore(cfg.DataDir); err != nil {
			return nil, err
		}
		n.reg, n.initial, err = registry.Load(registry.Config{
			Dir: cfg.PluginDir, Aliases: cfg.Aliases, Pins: cfg.Pins, RequirePins: cfg.RequirePins,
			Logger: n.log.With(slog.String("component", "registry")),
		})
		if err != nil {
			n.store.close()
			return nil, err
		}
	}
	n.launches = &launches{n: n, pending: make(map[*exec.Cmd]launchOf), inflight: make(map[*registry.VM]int)}
	n.metrics, err = metrics.New(metrics.Config{
		VMs:            n.listVersions,
		Output:         n.launches.outputStats,
		Sandbox:        n.sandboxMetric(),
		Registerer:     cfg.Registerer,
		HostCollectors: cfg.Registerer == nil,
		Describe: func(name string) metrics.VMInfo {
			d := n.describe(name)
			return metrics.VMInfo{Aliases: d.Aliases, Digest: d.Digest, Pinned: d.Pinned}
		},
	})
	if err != nil {
		n.close()
		return nil, err
	}
	n.engine = server.New(server.Config{
		HostName:    cfg.Launch.HostName,
		AllowRemote: cfg.Launch.AllowRemote,
		Logger:      n.log.With(slog.String("component", "engine")),
		Hooks:       n.metrics.EngineHooks(),
		Services:    []string{admin.ServiceName},
		TokenHint:   cfg.Remote.TokenHint,
	})
	hooks := &supervise.Hooks{State: n.stateChanged, Removed: n.removed}
	n.rolloutHooks(hooks)
	n.sup, err = supervise.New(supervise.Config{
		Launcher: n.launches,
		Backoff:  cfg.Backoff,
		Liveness: cfg.Liveness,
		Hooks:    hooks,
		Logger:   n.log.With(slog.String("component", "supervisor")),
		Rollout:  supervise.RolloutConfig{Interval: cfg.Rollout.ProbeInterval},
	})
	if err != nil {
		n.close()
		return nil, err
	}
	acfg := admin.Config{
		Supervisor: operator{n},
		Resolve:    n.resolve,
		Describe:   n.describe,
		Logs:       n.logs,
		Token:      cfg.AdminToken,
		Logger:     n.log.With(slog.String("component", "admin")),
		OnCall:     n.metrics.AdminCall,
	}
	if n.reg != nil {
		acfg.Reload = n.reloadProto
		acfg.Rollouts = rolloutsAPI{n}
	}
	if cfg.Remote.Listen != "" {
		n.remotes = newRemotes(n)
		acfg.Enrollments = n.remotes
	}
	if n.admin, err = admin.New(acfg); err != nil {
		n.close()
		return nil, err
	}
	n.handler = n.newMux()
	return n, nil
}

// check refuses a Config that cannot work, before anything is made.
func (cfg *Config) check() error {
	if cfg.Addr == "" && cfg.Listener != nil {
		cfg.Addr = dialAddr(cfg.Listener.Addr())
	}
	if cfg.DataDir != "" {
		// Made absolute once: the sandbox grants each VM paths under it,
		// and its rules take absolute paths only.
		abs, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("%w: DataDir %q: %v", vmre.ErrInvalidConfig, cfg.DataDir, err)
		}
		cfg.DataDir = abs
	}
	switch {
	case cfg.Addr == "" && !cfg.Launch.Legacy:
		return fmt.Errorf("%w: node.Config needs Addr, where VMs reach the node's Handler, or a Listener", vmre.ErrInvalidConfig)
	case cfg.Remote.Listen != "" && cfg.DataDir == "" && cfg.Remote.Certificate == nil:
		return fmt.Errorf("%w: remote VMs need a DataDir, where their tokens and the engine's certificate are kept", vmre.ErrInvalidConfig)
	case cfg.MetricsToken && cfg.AdminToken == "":
		return fmt.Errorf("%w: MetricsToken needs an AdminToken", vmre.ErrInvalidConfig)
	case cfg.Rollout.Strategy != 0 && cfg.Rollout.Strategy != supervise.Replace && cfg.Rollout.Strategy != supervise.StartFirst:
		return fmt.Errorf("%w: %s is not a rollout strategy", vmre.ErrInvalidConfig, cfg.Rollout.Strategy)
	case cfg.Rollout.MinHealthy < 0 || cfg.Rollout.HealthyDeadline < 0 || cfg.Rollout.ProbeInterval < 0 || cfg.Rollout.Keep < 0:
		return fmt.Errorf("%w: a RolloutConfig's durations and Keep are not negative", vmre.ErrInvalidConfig)
	}
	if err := validateSandbox(cfg); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, vm := range cfg.VMs {
		switch {
		case vm.Name == "" || vm.Path == "":
			return fmt.Errorf("%w: a node.VM needs a Name and a Path", vmre.ErrInvalidConfig)
		case seen[vm.Name]:
			return fmt.Errorf("%w: two node.VMs are named %q", vmre.ErrInvalidConfig, vm.Name)
		}
		seen[vm.Name] = true
	}
	return nil
}

// dialAddr is the address a VM on this host dials to reach a listener: an
// unspecified IP (0.0.0.0, ::) becomes loopback.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	switch {
	case ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return (&net.TCPAddr{IP: ip, Port: tcp.Port}).String()
}

// Handler is the node's HTTP handler: GET /healthz, GET /v1/vms, GET
// /metrics, the admin service (vmre.admin.v1) and the engine's paths
// (server.Engine.Paths), and nothing else. Mount it at "/" of any mux
// (chi: r.Mount("/", n.Handler())), beside routes of your own.
func (n *Node) Handler() http.Handler { return n.handler }

// Kill cuts short the graceful stop of the VMs once Run's context has
// ended: those still running get SIGKILL at once (a second Ctrl-C), and
// cause says why in the log. Before that it only arms it.
func (n *Node) Kill(cause error) {
	if cause == nil {
		cause = errors.New("killed")
	}
	n.mu.Lock()
	kill := n.kill
	stopping := n.phase == phaseStopping
	n.mu.Unlock()
	if stopping {
		n.log.Warn("killing the VMs now, without waiting for their graceful timeout", "reason", cause.Error())
	}
	if kill != nil {
		kill(cause)
	}
}

// Run runs the node until ctx ends (the log gives context.Cause(ctx) as
// the reason of the stop) or a part of it fails: it serves remote
// VMs over TLS (with Remote), starts the VMs, serves Handler on Listener
// (when set), and leaves the discovery file (with DiscoveryDir). Then it
// stops them in this order: the discovery file, the TLS engine, every VM
// in parallel (SIGTERM, SIGKILL after the graceful timeout or at Kill),
// the admin service's streams (followers of logs and watchers end
// cleanly), and last the HTTP serving. It returns nil after ctx ended, else the
// error that ended it, once everything it started has stopped and every
// file of the plugin directory is closed. Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.phase != phaseNew {
		n.mu.Unlock()
		return errors.New("node: Run called twice, or after Close")
	}
	n.phase = phaseRunning
	stopCtx, kill := context.WithCancelCause(context.Background())
	n.kill = kill
	n.mu.Unlock()
	defer kill(nil)
	defer n.close()
	if !n.cfg.KeepProcess {
		release, err := n.takeProcess()
		if err != nil {
			n.closeListener()
			return err
		}
		defer release()
	}
	if n.running != nil {
		// Before anything is launched: no VM runs twice.
		for _, s := range n.running.stopSurvivors(n.launches.gracefulTimeout()) {
			if n.cfg.Hooks != nil && n.cfg.Hooks.Survivor != nil {
				n.cfg.Hooks.Survivor(s)
			}
		}
		go n.running.run()
		defer n.running.close() // after the VMs have stopped: the record is empty
	}

	var tlsLn net.Listener
	if n.cfg.Remote.Listen != "" {
		ln, addr, err := listenRemote(n.cfg.Remote)
		if err != nil {
			n.closeListener()
			return err
		}
		tlsLn = ln
		n.mu.Lock()
		n.tlsAddr = addr
		n.mu.Unlock()
		n.engine.Reserve(ln.Addr().String()) // no VM announces the node's own listener
	}
	if err := n.launches.start(); err != nil {
		n.closeListener()
		if tlsLn != nil {
			tlsLn.Close()
		}
		return err
	}

	// The VMs are supervised, and the remote ones enrolled, before the node
	// serves anything or tells where remote VMs reach it: the listeners
	// queue what comes meanwhile. The discovery file is there before
	// anything happens to a VM, so that a client told of a VM's change (a
	// hook, an event) finds the node, whose HTTP then answers once the VMs
	// are supervised.
	removeDiscovery := func() {}
	if n.cfg.DiscoveryDir != "" {
		removeDiscovery = n.announce()
	}
	n.startVMs()
	if h := n.cfg.Hooks; h != nil && h.Serving != nil {
		h.Serving()
	}
	var g run.Group
	{ // the context
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-ctx.Done()
			return stopRequested{context.Cause(ctx)}
		}, func(error) { cancel() })
	}
	{ // the file for the CLI, removed first
		done := make(chan struct{})
		g.Add(func() error {
			<-done
			removeDiscovery()
			return nil
		}, func(error) { close(done) })
	}
	if tlsLn != nil { // remote VMs' engine
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			n.announceRemote()
			if err := server.ServeTLS(ctx, tlsLn, n.engine.Handler(), server.TLS{Certificate: *n.cert, Pings: n.cfg.Remote.Pings}); err != nil {
				return fmt.Errorf("the engine's TLS listener stopped: %w", err)
			}
			return nil
		}, func(error) {
			n.remotes.shutdown() // their leases end with word to start again
			cancel()
		})
	}
	{ // the follow-ups of rollouts, which end before the VMs stop
		done := make(chan struct{})
		g.Add(func() error {
			n.followUps(done)
			return nil
		}, func(error) { close(done) })
	}
	{ // the keeper of the versions' copies
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			n.keeper(ctx)
			return nil
		}, func(error) { cancel() })
	}
	{ // the VMs
		done := make(chan struct{})
		g.Add(func() error {
			<-done
			return nil
		}, func(err error) {
			n.stopVMs(stopCtx, err)
			// The VMs' last records are sent; the followers of their logs
			// and the watchers end now, so that the HTTP server's shutdown
			// never waits for them.
			n.admin.Close()
			close(done)
		})
	}
	if n.cfg.Listener != nil { // the node's HTTP
		ctx, cancel := context.WithCancel(context.Background())
		h := n.cfg.Handler
		if h == nil {
			h = n.handler
		}
		g.Add(func() error {
			if err := server.Serve(ctx, n.cfg.Listener, h); err != nil {
				return fmt.Errorf("the node's HTTP listener stopped: %w", err)
			}
			return nil
		}, func(error) {
			n.engine.Close() // its leases end before the server waits for them
			cancel()
		})
	}
	if err := g.Run(); !errors.As(err, new(stopRequested)) {
		return err
	}
	return nil
}

// stopRequested ends Run's group when Run's context ends: Run then
// returns nil. Its cause is the context's.
type stopRequested struct{ cause error }

func (s stopRequested) Error() string { return s.cause.Error() }

// Close releases what New took, for a node whose Run is never called (a
// start abandoned after New): the sealed copies of the plugin directory's
// pinned files, the engine, the node's collectors in Config.Registerer
// (which may then take another node's) and Config.Listener. Run releases
// them itself when it returns, so Close after Run has begun does nothing;
// Run after Close fails. Close may be called more than once; its error is
// that of a sealed copy that would not close.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.phase != phaseNew {
		n.mu.Unlock()
		return nil
	}
	n.phase = phaseDone
	n.mu.Unlock()
	n.closeListener()
	return n.close()
}

// takeProcess makes the process the child subreaper of the VMs'
// descendants and marks its inherited descriptors close-on-exec, before any
// VM starts (Config.KeepProcess). release stops the subreaper, once the
// VMs have stopped.
func (n *Node) takeProcess() (release func(), err error) {
	if err := launcher.CloseInheritedFDs(); err != nil {
		n.log.Warn("cannot mark the inherited descriptors close-on-exec: the VMs may inherit them", slog.String("error", err.Error()))
	}
	sr, err := launcher.StartSubreaper(n.log.With(slog.String("component", "subreaper")))
	if err != nil {
		if runtime.GOOS == "linux" {
			return nil, err
		}
		return func() {}, nil // no subreaper here: a VM's process group is all its stop reaches
	}
	return func() {
		if err := sr.Close(); err != nil {
			n.log.Error("processes VMs left behind survived the node", slog.String("error", err.Error()))
		}
	}, nil
}

// closeListener closes Config.Listener when Run fails before serving it.
func (n *Node) closeListener() {
	if n.cfg.Listener != nil {
		n.cfg.Listener.Close()
	}
}

// close releases what New made: the engine, the remote enrollments, the
// files of the plugin directory and the collectors in Config.Registerer.
func (n *Node) close() error {
	n.mu.Lock()
	n.phase = phaseDone
	n.mu.Unlock()
	if n.engine != nil {
		n.engine.Close()
	}
	if n.remotes != nil {
		n.remotes.closeAll()
	}
	if n.metrics != nil {
		n.metrics.Unregister()
	}
	if n.store != nil {
		n.store.close()
	}
	if n.reg != nil {
		return n.reg.Close()
	}
	return nil
}

// stopVMs stops every VM in parallel and waits until they are reaped; ctx
// (Kill) cuts their grace short. why is the end of the actor that stopped
// the node: Run's context (its cause), or a part of the node that failed.
func (n *Node) stopVMs(ctx context.Context, why error) {
	n.reloadMu.Lock() // a reconciliation in progress ends first
	defer n.reloadMu.Unlock()
	n.mu.Lock()
	n.phase = phaseStopping
	n.mu.Unlock()
	reason := "the node is stopping"
	if why != nil {
		reason = why.Error()
	}
	n.log.Info("stopping the VMs", "reason", reason, "graceful_timeout", n.launches.gracefulTimeout())
	n.sup.Close(ctx)
	n.sup.Close(context.Background()) // after a Kill, wait for their reaping
	n.launches.close()
}

// stateChanged tells the admin service's watchers and the hooks of a VM's
// change.
func (n *Node) stateChanged(vm supervise.VM) {
	n.mu.Lock()
	if e := n.entries[vm.Name]; e != nil {
		e.shown = vm.Version
	}
	n.mu.Unlock()
	n.admin.StateChanged(vm)
	if h := n.cfg.Hooks; h != nil && h.State != nil {
		h.State(vm)
	}
}

// listVersions is the supervisor's List, each VM's Version the digest of
// the version it runs when its run's is not known: an unpinned VM's first
// run, whose bytes the node kept after it began.
func (n *Node) listVersions() []supervise.VM {
	vms := n.sup.List()
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, vm := range vms {
		if e := n.entries[vm.Name]; vm.Version == "" && e != nil && e.vm.run != nil {
			vms[i].Version = digestText(e.vm.run)
		}
	}
	return vms
}

// removed tells the admin service's watchers and the hooks that the VM
// name left.
func (n *Node) removed(name string) {
	n.admin.Removed(name)
	if h := n.cfg.Hooks; h != nil && h.Removed != nil {
		h.Removed(name)
	}
}

// Get returns the supervisor's state of the VM name.
func (n *Node) Get(name string) (supervise.VM, bool) { return n.sup.Get(name) }

// Engine is the node's engine, which Handler serves.
func (n *Node) Engine() *server.Engine { return n.engine }

// RemoteEngine is where remote VMs reach the engine and the fingerprint of
// its certificate, once Run serves them; "" without Remote.
func (n *Node) RemoteEngine() (addr, certSHA256 string) {
	if n.cert == nil {
		return "", ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tlsAddr, tlspin.Fingerprint(n.cert.Certificate[0])
}

// announceRemote logs where remote VMs reach the engine and tells the
// hook.
func (n *Node) announceRemote() {
	addr, sum := n.RemoteEngine()
	n.log.Info("engine listening for remote VMs over TLS", "addr", addr, "cert_sha256", sum)
	if h := n.cfg.Hooks; h != nil && h.EngineListening != nil {
		h.EngineListening(addr, sum)
	}
}

// listenRemote listens for remote VMs, and returns the address they dial:
// Advertise, or the listener's own when it names a host.
func listenRemote(rc RemoteConfig) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", rc.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("listen for remote VMs on %s: %w", rc.Listen, err)
	}
	if rc.Advertise != "" {
		return ln, rc.Advertise, nil
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, "", fmt.Errorf("%w: the engine's TLS listener %s binds every interface: give the address remote VMs dial (Remote.Advertise)",
			vmre.ErrInvalidConfig, rc.Listen)
	}
	return ln, ln.Addr().String(), nil
}

// launcherConfig is the configuration of the node's launcher.
func (n *Node) launcherConfig() launcher.Config {
	lc := n.cfg.Launch
	lc.Logger = n.log // the VMs' output passes the log backlog of TailLogs
	lc.Hooks = launcher.JoinHooks(n.metrics.LauncherHooks(), lc.Hooks)
	if n.running != nil {
		lc.Hooks = launcher.JoinHooks(n.running.hooks(), lc.Hooks)
	}
	if lc.Start == nil {
		// A sandboxed VM's policy is applied without a second program
		// where the system allows (docs/SANDBOX.md, "How it works").
		lc.Start = sandbox.Start
	}
	// The VMs call back the engine of the node's Handler; a legacy launch
	// handshakes on a listener of its own instead.
	if !lc.Legacy {
		lc.Engine, lc.EngineAddr = n.engine, n.cfg.Addr
	}
	return lc
}
