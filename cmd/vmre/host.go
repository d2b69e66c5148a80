package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/internal/tlspin"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// host is what `vmre run` and `vmre node` serve: the node mux with its
// engine, one launcher, a supervisor of the VMs, and the node's metrics.
// `run` is a host of one VM.
type host struct {
	log        *slog.Logger
	events     *eventLog
	node       *node
	launcher   *launcher.Launcher
	sup        *supervise.Supervisor
	metrics    *metrics.Metrics
	admin      *admin.Service
	logs       *admin.Logs
	changed    chan struct{} // holds a value after any change of a VM's state
	describe   func(name string) admin.Description
	unannounce func() // removes the node's file for the CLI
	start      func() // serves the node mux: see serve

	engine    *server.Engine
	tlsAddr   string        // where remote VMs reach the engine over TLS, or ""
	stopTLS   func()        // ends the TLS engine's serving
	tlsServed chan struct{} // closed when it has stopped
}

// engineTLS is the engine's TLS listener for VMs on other hosts.
type engineTLS struct {
	listen, advertise string
	cert              tls.Certificate
	pings             tlspin.Pings
}

// hostConfig configures a host.
type hostConfig struct {
	launch  *launchFlags
	admin   *adminFlags
	listen  string
	backoff supervise.Backoff
	events  *eventLog
	log     *slog.Logger
	getenv  func(string) string
	// For vmre node: names by alias, what the registry knows of a VM, a
	// reload of the plugin directory, the engine's TLS listener and the
	// remote VMs enrolled in it.
	resolve     func(nameOrAlias string) (string, bool)
	describe    func(name string) admin.Description
	reload      func() (registry.Report, error)
	engineTLS   *engineTLS
	enrollments admin.Enrollments
}

// startHost builds a node of no VMs yet, listening on cfg.listen; serve
// starts serving it, and must be called once. A listen address beyond loopback without an admin
// token is refused before anything binds.
func startHost(cfg hostConfig) (*host, error) {
	token, err := cfg.admin.token(cfg.listen)
	if err != nil {
		return nil, err
	}
	ln, addr, err := listen(cfg.listen)
	if err != nil {
		return nil, err
	}
	var tlsLn net.Listener
	var tlsAddr string
	if t := cfg.engineTLS; t != nil {
		if tlsLn, tlsAddr, err = listenEngineTLS(t); err != nil {
			ln.Close()
			return nil, err
		}
	}
	closeListeners := func() { // on a failure below
		ln.Close()
		if tlsLn != nil {
			tlsLn.Close()
		}
	}
	logs := admin.NewLogs(0)
	log := slog.New(logs.Handler(cfg.log.Handler())) // keeps each VM's recent records for TailLogs
	h := &host{log: log, events: cfg.events, logs: logs, changed: make(chan struct{}, 1), describe: cfg.describe, tlsAddr: tlsAddr}
	h.metrics, err = metrics.New(metrics.Config{
		VMs:            func() []supervise.VM { return h.sup.List() },
		Output:         func() []launcher.OutputStat { return h.launcher.OutputStats() },
		HostCollectors: true,
	})
	if err != nil {
		closeListeners()
		return nil, err
	}
	engine := server.New(server.Config{
		HostName: cfg.launch.hostName,
		Logger:   log.With(slog.String("component", "engine")),
		Hooks:    h.metrics.EngineHooks(),
		Services: []string{admin.ServiceName},
	})
	h.engine = engine
	lcfg := cfg.launch.config(log)
	lcfg.Hooks = launcher.JoinHooks(cfg.events.hooks(), h.metrics.LauncherHooks())
	// The VMs call back the engine in the mux; a legacy launch handshakes on
	// a listener of its own instead.
	if !cfg.launch.legacy {
		lcfg.Engine, lcfg.EngineAddr = engine, addr
	}
	if h.launcher, err = launcher.New(lcfg); err != nil {
		closeListeners()
		return nil, err
	}
	h.sup, err = supervise.New(supervise.Config{
		Launcher: supervise.FromLauncher(h.launcher),
		Backoff:  cfg.backoff,
		Hooks:    &supervise.Hooks{State: h.stateChanged},
		Logger:   log.With(slog.String("component", "supervisor")),
	})
	if err != nil {
		h.launcher.Close()
		closeListeners()
		return nil, err
	}
	h.admin, err = admin.New(admin.Config{
		Supervisor:  h.sup,
		Resolve:     cfg.resolve,
		Describe:    cfg.describe,
		Reload:      cfg.reload,
		Logs:        logs,
		Enrollments: cfg.enrollments,
		Token:       token,
		Logger:      log.With(slog.String("component", "admin")),
		OnCall:      h.metrics.AdminCall,
	})
	if err != nil {
		h.launcher.Close()
		closeListeners()
		return nil, err
	}
	adminPath, adminHandler := h.admin.Handler()
	metricsHandler := h.metrics.Handler()
	if cfg.admin.metricsToken {
		metricsHandler = requireToken(token, metricsHandler)
	}
	h.unannounce, h.stopTLS = func() {}, func() {}
	h.start = func() {
		if tlsLn != nil {
			ctx, cancel := context.WithCancel(context.Background())
			h.tlsServed = make(chan struct{})
			h.stopTLS = func() { cancel(); <-h.tlsServed }
			go func() {
				defer close(h.tlsServed)
				err := server.ServeTLS(ctx, tlsLn, engine.Handler(), server.TLS{Certificate: cfg.engineTLS.cert, Pings: server.Pings(cfg.engineTLS.pings)})
				if err != nil {
					log.Error("the engine's TLS listener stopped", "error", err.Error())
				}
			}()
			sum := tlspin.Fingerprint(cfg.engineTLS.cert.Certificate[0])
			log.Info("engine listening for remote VMs over TLS", "addr", tlsAddr, "cert_sha256", sum)
			cfg.events.write(event{Event: "engine_listening", Addr: tlsAddr, CertSHA256: sum})
		}
		h.node = startNode(ln, addr, engine, muxRoutes{
			vms:     http.HandlerFunc(h.serveVMs),
			metrics: metricsHandler,
			admin:   func(r chi.Router) { r.Handle(adminPath+"*", adminHandler) },
		})
		log.Info("node mux listening", "addr", addr, "url", "http://"+addr, "admin_token", token != "")
		cfg.events.write(event{Event: "listening", Addr: addr})
		if !listensOnLoopback(cfg.listen) { // addr names loopback for 0.0.0.0 and [::] too
			log.Warn("the node mux listens beyond loopback: the admin service takes only the token of --admin-token-file; "+
				"GET /v1/vms, /healthz and the engine are open", "listen", cfg.listen, "metrics_token", cfg.admin.metricsToken)
		}
		remove, err := announceNode(cfg.getenv, nodeFile{URL: "http://" + addr, Pid: os.Getpid(), TokenFile: cfg.admin.tokenFileAbs()})
		if err != nil {
			log.Warn("cannot leave the node's address for vmre ps and the other clients; give them --node",
				"url", "http://"+addr, "error", err.Error())
			return
		}
		h.unannounce = remove
	}
	return h, nil
}

// listenEngineTLS listens for remote VMs, and returns the address they
// dial: --engine-advertise, or the listener's own when it names a host.
func listenEngineTLS(t *engineTLS) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", t.listen)
	if err != nil {
		return nil, "", fmt.Errorf("--engine-listen %s: %w", t.listen, err)
	}
	addr := ln.Addr().String()
	if t.advertise != "" {
		return ln, t.advertise, nil
	}
	if ln.Addr().(*net.TCPAddr).IP.IsUnspecified() {
		ln.Close()
		return nil, "", fmt.Errorf("%w: --engine-listen %s binds every interface: give --engine-advertise HOST:PORT, the address remote VMs dial",
			vmre.ErrInvalidConfig, t.listen)
	}
	return ln, addr, nil
}

// serve starts serving the node mux and leaves the node's address for the
// CLI's clients.
func (h *host) serve() { h.start() }

// stateChanged tells --events and the host's waiters of a VM's change.
func (h *host) stateChanged(vm supervise.VM) {
	ev := event{Event: "state", VM: vm.Name, State: vm.State.String(), Pid: vm.Pid, Addr: vm.Addr, Peer: vm.Peer,
		CertSHA256: vm.CertSHA256, Error: errText(vm.Err)}
	if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
		ev.Attempt, ev.DelayMS = vm.Attempt, ms(vm.Delay)
	}
	h.events.write(ev)
	h.admin.StateChanged(vm)
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// close stops every VM in parallel (ctx ends their grace early: a second
// Ctrl-C), waits until all are reaped, and stops serving.
func (h *host) close(ctx context.Context) {
	h.unannounce()
	h.stopTLS()
	// A second signal ends ctx: say why the VMs get SIGKILL before their
	// graceful timeout, which the launcher knows only as an ended context.
	// The stop sees the end only once that is said, so the line comes
	// before the launcher's "sending SIGKILL"; once the VMs are reaped, a
	// signal kills nothing and is not announced.
	stopCtx, kill := context.WithCancelCause(context.WithoutCancel(ctx))
	defer kill(nil)
	warned := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		defer close(warned)
		h.log.Warn("killing the VMs now, without waiting for their graceful timeout", "reason", context.Cause(ctx).Error())
		kill(context.Cause(ctx))
	})
	h.sup.Close(stopCtx)
	if !unwatch() {
		<-warned
	}
	h.sup.Close(context.Background()) // after ctx, the VMs were killed: wait for their reaping
	h.launcher.Close()
	if err := h.node.close(); err != nil {
		h.log.Warn("node mux stopped with an error", "error", err)
	}
}

// vmJSON is one VM in GET /v1/vms.
type vmJSON struct {
	Name            string     `json:"name"`
	Aliases         []string   `json:"aliases,omitempty"`
	State           string     `json:"state"` // starting, running, backoff, crashloop, stopped, exited, failed
	Pid             int        `json:"pid,omitempty"`
	Addr            string     `json:"addr,omitempty"`
	ProtocolVersion uint       `json:"protocol_version,omitempty"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	HandshakeMS     float64    `json:"handshake_ms,omitempty"`
	Launches        int        `json:"launches"`
	Restarts        int        `json:"restarts"`
	Attempt         int        `json:"attempt,omitempty"`      // in a backoff: failures in a row
	BackoffMS       float64    `json:"backoff_ms,omitempty"`   // in a backoff: the delay
	NextAttempt     *time.Time `json:"next_attempt,omitempty"` // in a backoff: when
	Exit            *exitJSON  `json:"exit,omitempty"`         // how its last run ended
	Error           string     `json:"error,omitempty"`        // why its last launch failed, or why it cannot run
	Digest          string     `json:"digest,omitempty"`       // SHA-256 of its file (vmre node)
	Pinned          bool       `json:"pinned,omitempty"`       // the digest matched a pin
	Remote          bool       `json:"remote,omitempty"`       // a VM on another host: no pid
	Peer            string     `json:"peer,omitempty"`         // where a remote VM's lease comes from
	CertSHA256      string     `json:"cert_sha256,omitempty"`  // its server's TLS certificate
}

// exitJSON is how a VM ended.
type exitJSON struct {
	Code    int     `json:"code"`             // -1 when a signal ended it
	Signal  string  `json:"signal,omitempty"` // e.g. "terminated", "killed"
	Stage   string  `json:"stage"`            // none, shutdown, sigterm or sigkill: how far the stop sequence went
	RanMS   float64 `json:"ran_ms"`
	Summary string  `json:"summary"` // e.g. "exit code 0 after 1.2s (stopped by SIGTERM)"
}

func newExitJSON(exit launcher.Exit) *exitJSON {
	return &exitJSON{Code: exit.Code, Signal: exit.Signal, Stage: exit.Stage.String(), RanMS: ms(exit.Ran), Summary: exit.String()}
}

// vmView is what the node's APIs show of a VM.
func (h *host) vmView(vm supervise.VM) vmJSON {
	j := vmJSON{Name: vm.Name, State: vm.State.String(), Launches: vm.Launches, Restarts: vm.Restarts, Error: errText(vm.Err),
		Remote: vm.Remote, Peer: vm.Peer, CertSHA256: vm.CertSHA256}
	if vm.State == supervise.StateRunning {
		started := vm.Started.UTC()
		j.Pid, j.Addr, j.ProtocolVersion, j.StartedAt, j.HandshakeMS = vm.Pid, vm.Addr, vm.ProtocolVersion, &started, ms(vm.Handshake)
	}
	if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
		next := vm.NextAttempt.UTC()
		j.Attempt, j.BackoffMS, j.NextAttempt = vm.Attempt, ms(vm.Delay), &next
	}
	if vm.LastExit != nil {
		j.Exit = newExitJSON(*vm.LastExit)
	}
	if h.describe != nil {
		d := h.describe(vm.Name)
		j.Aliases, j.Digest, j.Pinned = d.Aliases, d.Digest, d.Pinned
	}
	return j
}

// serveVMs serves GET /v1/vms: a JSON array, never null.
func (h *host) serveVMs(w http.ResponseWriter, _ *http.Request) {
	vms := h.sup.List()
	out := make([]vmJSON, 0, len(vms))
	for _, vm := range vms {
		out = append(out, h.vmView(vm))
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
