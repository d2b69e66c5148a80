package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// host is what `vmre run` and `vmre node` serve: the node mux with its
// engine, one launcher, a supervisor of the VMs, and the node's metrics.
// `run` is a host of one VM.
type host struct {
	log      *slog.Logger
	events   *eventLog
	node     *node
	launcher *launcher.Launcher
	sup      *supervise.Supervisor
	metrics  *metrics.Metrics
	changed  chan struct{}           // holds a value after any change of a VM's state
	extra    func(name string) vmExt // what the registry knows of a VM; nil for run
}

// vmExt is what GET /v1/vms shows of a VM beyond its state.
type vmExt struct {
	aliases []string
	digest  string
	pinned  bool
}

// hostConfig configures a host.
type hostConfig struct {
	launch  *launchFlags
	listen  string
	backoff supervise.Backoff
	events  *eventLog
	log     *slog.Logger
}

// startHost listens, and serves the node mux with a supervisor of no VMs
// yet: add them with sup.Add.
func startHost(cfg hostConfig) (*host, error) {
	ln, addr, err := listen(cfg.listen)
	if err != nil {
		return nil, err
	}
	log := cfg.log
	h := &host{log: log, events: cfg.events, changed: make(chan struct{}, 1)}
	h.metrics = metrics.New(metrics.Source{
		VMs:    func() []supervise.VM { return h.sup.List() },
		Output: func() []launcher.OutputStat { return h.launcher.OutputStats() },
	})
	engine := server.New(server.Config{
		HostName: cfg.launch.hostName,
		Logger:   log.With(slog.String("component", "engine")),
		Hooks:    h.metrics.EngineHooks(),
	})
	lcfg := cfg.launch.config(log)
	lcfg.Hooks = launcher.JoinHooks(cfg.events.hooks(), h.metrics.LauncherHooks())
	// The VMs call back the engine in the mux; a legacy launch handshakes on
	// a listener of its own instead.
	if !cfg.launch.legacy {
		lcfg.Engine, lcfg.EngineAddr = engine, addr
	}
	if h.launcher, err = launcher.New(lcfg); err != nil {
		ln.Close()
		return nil, err
	}
	h.sup, err = supervise.New(supervise.Config{
		Launcher: h.launcher,
		Backoff:  cfg.backoff,
		Hooks:    &supervise.Hooks{State: h.stateChanged},
		Logger:   log.With(slog.String("component", "supervisor")),
	})
	if err != nil {
		h.launcher.Close()
		ln.Close()
		return nil, err
	}
	h.node = startNode(ln, addr, engine, muxRoutes{vms: http.HandlerFunc(h.serveVMs), metrics: h.metrics.Handler()})
	log.Info("node mux listening", "addr", addr, "url", "http://"+addr)
	cfg.events.write(event{Event: "listening", Addr: addr})
	if !isLoopback(addr) {
		log.Warn("the node mux listens beyond loopback: anyone who can reach it can read /v1/vms", "listen", cfg.listen)
	}
	return h, nil
}

// stateChanged tells --events and the host's waiters of a VM's change.
func (h *host) stateChanged(vm supervise.VM) {
	ev := event{Event: "state", VM: vm.Name, State: vm.State.String(), Pid: vm.Pid, Addr: vm.Addr, Error: errText(vm.Err)}
	if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
		ev.Attempt, ev.DelayMS = vm.Attempt, ms(vm.Delay)
	}
	h.events.write(ev)
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// close stops every VM in parallel (ctx ends their grace early: a second
// Ctrl-C), waits until all are reaped, and stops serving.
func (h *host) close(ctx context.Context) {
	h.sup.Close(ctx)
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
	j := vmJSON{Name: vm.Name, State: vm.State.String(), Launches: vm.Launches, Restarts: vm.Restarts, Error: errText(vm.Err)}
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
	if h.extra != nil {
		x := h.extra(vm.Name)
		j.Aliases, j.Digest, j.Pinned = x.aliases, x.digest, x.pinned
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
