package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// handshakeBuckets are the bounds of the handshake duration histogram, in
// seconds: a handshake takes a few milliseconds, a slow VM a few hundred.
func handshakeBuckets() []float64 {
	return []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5}
}

// Config says what the metrics read at scrape time and where their
// collectors are registered.
type Config struct {
	// VMs lists the VMs and their states (a Supervisor's List); may be
	// nil.
	VMs func() []supervise.VM
	// Output counts the lines of the VMs' output (a Launcher's
	// OutputStats); may be nil.
	Output func() []launcher.OutputStat
	// Sandbox tells the level of the VMs' sandboxes, for vmre_vm_sandbox
	// (with VMs); may be nil.
	Sandbox *SandboxLevels
	// Registerer, when set, receives the node's collectors too: an
	// embedder's own registry, which then serves the node's metrics beside
	// its own. Nothing else is registered there unless HostCollectors asks.
	Registerer prometheus.Registerer
	// HostCollectors adds the Go runtime's and the process's collectors of
	// the host (go_*, process_*), as `vmre node` serves them. Leave it off
	// when the Registerer has them already.
	HostCollectors bool
	// Describe tells what the node knows of a VM beyond its supervision:
	// its aliases, digest and pin (vmre_vm_info). A VM's vm label is its
	// first alias when it has one, else its name. May be nil.
	Describe func(name string) VMInfo
}

// VMInfo is what vmre_vm_info tells of a VM.
type VMInfo struct {
	Aliases []string
	Digest  string
	Pinned  bool
}

// Metrics holds a node's collectors. Handler serves them from a registry
// of their own; Config.Registerer, when given, holds them as well.
type Metrics struct {
	reg      *prometheus.Registry
	describe func(string) VMInfo
	// registered are the collectors in Config.Registerer, which
	// Unregister takes out.
	registerer prometheus.Registerer
	registered []prometheus.Collector

	launches  *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	exits     *prometheus.CounterVec
	calls     *prometheus.CounterVec
	owners    *prometheus.CounterVec
	admin     *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	abandoned *prometheus.CounterVec
	rollouts  rollouts
}

// New returns the metrics of a node whose VMs cfg tells of. It fails,
// registering nothing, when cfg.Registerer refuses one of the collectors
// (a name it holds already: a second node in one registry, or the Go
// collector with HostCollectors).
func New(cfg Config) (*Metrics, error) {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		describe: cfg.Describe,
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_launches_total",
			Help: "Launches of VMs by result: ready, or the phase that failed (config, listen, exec, handshake_wait, version).",
		}, []string{"vm", "result"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmre_handshake_duration_seconds",
			Help:    "Time from the start of a launch to the VM's completed handshake.",
			Buckets: handshakeBuckets(),
		}, []string{"vm"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_vm_exits_total",
			Help: "VM process exits by how they ended: code_zero, code_nonzero, signal (a signal the stop did not send), stopped (after SIGTERM or the legacy Shutdown), killed (SIGKILL after the graceful timeout or a cancelled stop).",
		}, []string{"vm", "how"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_engine_calls_total",
			Help: "Calls to the handshake engine by service, method and result (ok or the Connect code of the refusal), refused calls with unknown tokens included.",
		}, []string{"service", "method", "result"}),
		owners: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_engine_owner_refusals_total",
			Help: "Initialize calls refused because the call, or the address it announced, is not the launched VM's, by what did not match: caller (the connection is another process's: a stolen token), listener (another process listens there), node_address, vm_address (docs/PROTOCOL.md, The caller check).",
		}, []string{"reason"}),
		admin: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_admin_calls_total",
			Help: "Calls to the admin service by method and result (ok or the Connect code), refused ones included.",
		}, []string{"method", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_vm_output_lines_dropped_total",
			Help: "Lines of VM output that did not become whole records: truncated at 64 KiB (the rest of the line was dropped).",
		}, []string{"vm", "stream", "reason"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_vm_output_pipes_abandoned_total",
			Help: "Times reading a VM's stdout or stderr stopped before the pipe's end: after the VM's exit, a process outside its group held the pipe open past the drain time; what it writes from then on is not read.",
		}, []string{"vm", "stream"}),
	}
	m.rollouts = newRollouts(cfg.VMs, m.label, cfg.Describe)
	cs := []prometheus.Collector{m.launches, m.handshake, m.exits, m.calls, m.owners, m.admin, m.dropped, m.abandoned,
		newStateCollector(cfg.VMs, cfg.Output, m.label, cfg.Describe), newSandboxCollector(cfg.VMs, cfg.Sandbox, m.label), buildInfo()}
	cs = append(cs, m.rollouts.collectors()...)
	if cfg.HostCollectors {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Registerer != nil {
		if err := registerAll(cfg.Registerer, cs); err != nil {
			return nil, err
		}
		m.registerer, m.registered = cfg.Registerer, cs
	}
	m.reg.MustRegister(cs...) // a registry of its own: nothing there to collide with
	return m, nil
}

// registerAll registers every collector in r, or none.
func registerAll(r prometheus.Registerer, cs []prometheus.Collector) error {
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("%w: metrics.Config.Registerer refused the node's collectors: %w", vmre.ErrInvalidConfig, err)
		}
	}
	return nil
}

// Unregister takes the collectors out of Config.Registerer, so that the
// registry may take those of another node: call it once the node is over.
// It may be called more than once.
func (m *Metrics) Unregister() {
	for _, c := range m.registered {
		m.registerer.Unregister(c)
	}
	m.registered = nil
}

// Handler serves the node's metrics, and the host's with HostCollectors,
// in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// LauncherHooks count launches, handshakes, exits and dropped output.
func (m *Metrics) LauncherHooks() *launcher.Hooks {
	return &launcher.Hooks{
		Ready: func(i launcher.ReadyInfo) {
			m.launches.WithLabelValues(m.label(i.VM), "ready").Inc()
		},
		Handshake: func(i launcher.HandshakeInfo) {
			m.handshake.WithLabelValues(m.label(i.VM)).Observe(i.Elapsed.Seconds())
		},
		LaunchFailed: func(err *launcher.LaunchError) {
			m.launches.WithLabelValues(m.label(err.VM), strings.ReplaceAll(err.Phase.String(), " ", "_")).Inc()
		},
		Exited: func(i launcher.ExitInfo) {
			m.exits.WithLabelValues(m.label(i.VM), exitHow(i.Exit)).Inc()
		},
		OutputDropped: func(i launcher.OutputDropInfo) {
			if i.Truncated > 0 {
				m.dropped.WithLabelValues(m.label(i.VM), i.Stream, "truncated").Add(float64(i.Truncated))
			}
			if i.Unread {
				m.abandoned.WithLabelValues(m.label(i.VM), i.Stream).Inc()
			}
		},
	}
}

// label is the vm label of the VM name: its first alias when it has one,
// else its name, so that a VM is named in its metrics as its operators
// name it (vmre_vm_info maps the label to the name); made valid UTF-8, as
// every label value must be (the client panics on one that is not), the
// way the node's log escapes it (bad\xffname).
func (m *Metrics) label(name string) string {
	if m.describe != nil {
		if a := m.describe(name).Aliases; len(a) > 0 {
			return safetext.Valid(a[0])
		}
	}
	return safetext.Valid(name)
}

// exitHow classes an exit for vmre_vm_exits_total.
func exitHow(e launcher.Exit) string {
	switch {
	case e.Stage == launcher.StageKill:
		return "killed"
	case e.Stage != launcher.StageNone:
		return "stopped"
	case e.Signal != "":
		return "signal"
	case e.Code == 0 && e.Err == nil:
		return "code_zero"
	}
	return "code_nonzero"
}

// EngineHooks count the engine's calls, accepted or refused, and the
// refusals of calls that were not the launched VM's by reason.
func (m *Metrics) EngineHooks() *server.Hooks {
	return &server.Hooks{Call: func(c server.Call) {
		service, method := splitProcedure(c.Procedure)
		m.calls.WithLabelValues(service, method, c.Result()).Inc()
		var oe *server.OwnerError
		if errors.As(c.Err, &oe) {
			m.owners.WithLabelValues(oe.Reason).Inc()
		}
	}}
}

// AdminCall counts a call to the admin service by its procedure and its
// result: "ok" for a nil err, else err's Connect code. It is the shape of
// admin.Config.OnCall.
func (m *Metrics) AdminCall(procedure string, err error) {
	_, method := splitProcedure(procedure)
	result := "ok"
	if err != nil {
		result = connect.CodeOf(err).String()
	}
	m.admin.WithLabelValues(method, result).Inc()
}

// splitProcedure splits "/pkg.Service/Method".
func splitProcedure(p string) (service, method string) {
	p = strings.TrimPrefix(p, "/")
	service, method, _ = strings.Cut(p, "/")
	return service, method
}

// stateCollector reads the VMs' states and processes at scrape time.
type stateCollector struct {
	list     func() []supervise.VM
	output   func() []launcher.OutputStat
	label    func(string) string
	describe func(string) VMInfo

	vms, state, info, restarts, backoff *prometheus.Desc
	cpu, rss, fds, started, lines       *prometheus.Desc
}

func newStateCollector(list func() []supervise.VM, output func() []launcher.OutputStat, label func(string) string, describe func(string) VMInfo) *stateCollector {
	return &stateCollector{
		list:     list,
		output:   output,
		label:    label,
		describe: describe,
		vms:      prometheus.NewDesc("vmre_vms", "VMs by state: starting, running, unhealthy, backoff, crashloop, stopped, exited, failed, and for remote VMs waiting and lost.", []string{"state"}, nil),
		state: prometheus.NewDesc("vmre_vm_state",
			"A VM's state: 1 for the state it is in, 0 for every other (kube-state-metrics' shape); the vm label is its first alias when it has one.",
			[]string{"vm", "state"}, nil),
		info: prometheus.NewDesc("vmre_vm_info",
			"Always 1: a VM's ID (its name in the plugin directory), the digest of the bytes it runs, whether they matched a pin, and its aliases (comma-separated).",
			[]string{"vm", "id", "digest", "pinned", "aliases"}, nil),
		restarts: prometheus.NewDesc("vmre_vm_restarts_total", "Launches a VM's restart policy made after it ended or failed.", []string{"vm"}, nil),
		backoff:  prometheus.NewDesc("vmre_vm_backoff_seconds", "The delay before a VM's next attempt while it waits in a backoff, else 0.", []string{"vm"}, nil),
		cpu:      prometheus.NewDesc("vmre_vm_cpu_seconds_total", "User and system CPU time of a running VM's process.", []string{"vm"}, nil),
		rss:      prometheus.NewDesc("vmre_vm_resident_memory_bytes", "Resident memory of a running VM's process.", []string{"vm"}, nil),
		fds:      prometheus.NewDesc("vmre_vm_open_fds", "Open file descriptors of a running VM's process.", []string{"vm"}, nil),
		started:  prometheus.NewDesc("vmre_vm_start_time_seconds", "Start time of a running VM's process, in seconds since the Unix epoch.", []string{"vm"}, nil),
		lines:    prometheus.NewDesc("vmre_vm_output_lines_total", "Lines of a VM's output by stream and level, across its runs.", []string{"vm", "stream", "level"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.vms, c.state, c.info, c.restarts, c.backoff, c.cpu, c.rss, c.fds, c.started, c.lines} {
		ch <- d
	}
}

var allStates = []supervise.State{supervise.StateStarting, supervise.StateRunning, supervise.StateBackoff,
	supervise.StateCrashLoop, supervise.StateStopped, supervise.StateExited, supervise.StateFailed,
	supervise.StateWaiting, supervise.StateLost, supervise.StateUnhealthy}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.list != nil {
		byState := make(map[supervise.State]int, len(allStates))
		for _, vm := range c.list() {
			byState[vm.State]++
			label := c.label(vm.Name)
			for _, s := range allStates {
				one := 0.0
				if s == vm.State {
					one = 1
				}
				ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, one, label, s.String())
			}
			var info VMInfo
			if c.describe != nil {
				info = c.describe(vm.Name)
			}
			ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, label, safetext.Valid(vm.Name), info.Digest,
				strconv.FormatBool(info.Pinned), safetext.Valid(strings.Join(info.Aliases, ",")))
			ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(vm.Restarts), label)
			delay := 0.0
			if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
				delay = vm.Delay.Seconds()
			}
			ch <- prometheus.MustNewConstMetric(c.backoff, prometheus.GaugeValue, delay, label)
			if vm.State == supervise.StateRunning && vm.Pid > 0 {
				c.collectProcess(ch, label, vm.Pid)
			}
		}
		for _, s := range allStates {
			ch <- prometheus.MustNewConstMetric(c.vms, prometheus.GaugeValue, float64(byState[s]), s.String())
		}
	}
	if c.output != nil {
		for _, o := range c.output() {
			ch <- prometheus.MustNewConstMetric(c.lines, prometheus.CounterValue, float64(o.Lines), c.label(o.VM), o.Stream, o.Level)
		}
	}
}

// collectProcess reads a running VM's process figures. A process that
// has just ended reports nothing.
func (c *stateCollector) collectProcess(ch chan<- prometheus.Metric, name string, pid int) {
	p, err := readProcess(pid)
	if err != nil {
		if !errors.Is(err, syscall.ESRCH) {
			ch <- prometheus.NewInvalidMetric(c.cpu, err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, p.cpu.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(p.rss), name)
	if p.fds >= 0 {
		ch <- prometheus.MustNewConstMetric(c.fds, prometheus.GaugeValue, float64(p.fds), name)
	}
	ch <- prometheus.MustNewConstMetric(c.started, prometheus.GaugeValue, float64(p.started.UnixNano())/1e9, name)
}

// process is what the metrics read of a VM's process.
type process struct {
	cpu     time.Duration
	rss     int64
	fds     int // -1 when unknown
	started time.Time
}
