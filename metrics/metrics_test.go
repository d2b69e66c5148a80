package metrics_test

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Truncated lines count as lines; an abandoned pipe counts once, as a pipe,
// not as a line that was never seen.
func TestOutputDropped(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{VMs: func() []supervise.VM { return nil }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hooks := m.LauncherHooks()
	hooks.OutputDropped(launcher.OutputDropInfo{VM: "a", Stream: "stderr", Truncated: 3})
	hooks.OutputDropped(launcher.OutputDropInfo{VM: "a", Stream: "stdout", Unread: true})

	want := `
# HELP vmre_vm_output_lines_dropped_total Lines of VM output that did not become whole records: truncated at 64 KiB (the rest of the line was dropped).
# TYPE vmre_vm_output_lines_dropped_total counter
vmre_vm_output_lines_dropped_total{reason="truncated",stream="stderr",vm="a"} 3
# HELP vmre_vm_output_pipes_abandoned_total Times reading a VM's stdout or stderr stopped before the pipe's end: after the VM's exit, a process outside its group held the pipe open past the drain time; what it writes from then on is not read.
# TYPE vmre_vm_output_pipes_abandoned_total counter
vmre_vm_output_pipes_abandoned_total{stream="stdout",vm="a"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"vmre_vm_output_lines_dropped_total", "vmre_vm_output_pipes_abandoned_total"); err != nil {
		t.Error(err)
	}
}

// A VM name that is not valid UTF-8 (a plugin run by its path) becomes an
// escaped label in every series, through every hook and the scrape of the
// states, instead of the client's panic.
func TestNameNotUTF8(t *testing.T) {
	const name = "bad\xffname"
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{
		VMs: func() []supervise.VM {
			return []supervise.VM{{Name: name, State: supervise.StateBackoff, Restarts: 2}}
		},
		Output: func() []launcher.OutputStat {
			return []launcher.OutputStat{{VM: name, Stream: "stderr", Level: "info", Lines: 5}}
		},
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks := m.LauncherHooks()
	hooks.Ready(launcher.ReadyInfo{VM: name})
	hooks.Handshake(launcher.HandshakeInfo{VM: name})
	hooks.LaunchFailed(&launcher.LaunchError{VM: name, Phase: launcher.PhaseExec})
	hooks.Exited(launcher.ExitInfo{VM: name})
	hooks.OutputDropped(launcher.OutputDropInfo{VM: name, Stream: "stdout", Truncated: 1, Unread: true})

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() != "vm" {
					continue
				}
				series++
				if l.GetValue() != `bad\xffname` {
					t.Errorf("%s: vm=%q, want bad\\xffname", f.GetName(), l.GetValue())
				}
			}
		}
	}
	// launches (2), handshake, exits, dropped, abandoned, restarts,
	// backoff, lines, info, and vmre_vm_state for each of the ten states.
	if want := 20; series != want {
		t.Errorf("%d series with a vm label, want %d", series, want)
	}
}

// A refusal of the caller check counts by its reason, besides its code.
func TestOwnerRefusals(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hooks := m.EngineHooks()
	refused := connect.NewError(connect.CodePermissionDenied, &server.OwnerError{Reason: server.ReasonCaller})
	hooks.Call(server.Call{Procedure: "/vmre.runtime.v1.RuntimeService/Initialize", Err: refused})
	hooks.Call(server.Call{Procedure: "/vmre.runtime.v1.RuntimeService/Initialize", Err: connect.NewError(connect.CodeUnauthenticated, errors.New("unknown token"))})
	hooks.Call(server.Call{Procedure: "/vmre.runtime.v1.RuntimeService/Initialize"})
	want := `
# HELP vmre_engine_owner_refusals_total Initialize calls refused because the call, or the address it announced, is not the launched VM's, by what did not match: caller (the connection is another process's: a stolen token), listener (another process listens there), node_address, vm_address (docs/PROTOCOL.md, The caller check).
# TYPE vmre_engine_owner_refusals_total counter
vmre_engine_owner_refusals_total{reason="caller"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vmre_engine_owner_refusals_total"); err != nil {
		t.Error(err)
	}
}

// TestEmbedderRegistry: an embedder's registry that holds the Go and
// process collectors already takes the node's metrics beside them, each
// series once; asking for the host's collectors there too, or a second
// node in the same registry, is refused and registers nothing.
func TestEmbedderRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	vms := func() []supervise.VM {
		return []supervise.VM{{Name: "a", State: supervise.StateBackoff}}
	}
	if _, err := metrics.New(metrics.Config{VMs: vms, Registerer: reg, HostCollectors: true}); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Fatalf("the host's collectors twice in one registry: %v; want ErrInvalidConfig", err)
	}
	if n := countFamilies(t, reg, "vmre_"); n != 0 {
		t.Fatalf("a refused New left %d of its families in the registry", n)
	}
	m, err := metrics.New(metrics.Config{VMs: vms, Registerer: reg})
	if err != nil {
		t.Fatal(err) // Gather below reports a duplicate series as an error too
	}
	if n := countFamilies(t, reg, "vmre_"); n < 3 {
		t.Errorf("%d vmre_ families in the embedder's registry; want the node's", n)
	}
	if n := countFamilies(t, reg, "go_goroutines"); n != 1 {
		t.Errorf("go_goroutines %d times; want once", n)
	}
	if _, err := metrics.New(metrics.Config{VMs: vms, Registerer: reg}); !errors.Is(err, vmre.ErrInvalidConfig) {
		t.Errorf("a second node in one registry: %v; want ErrInvalidConfig", err)
	}

	// The node's own handler serves the node's metrics, without the host's
	// unless asked.
	if body := scrape(t, m); !strings.Contains(body, `vmre_vms{state="backoff"} 1`) || strings.Contains(body, "go_goroutines") {
		t.Errorf("the handler of a node without HostCollectors served:\n%s", body)
	}
	host, err := metrics.New(metrics.Config{VMs: vms, HostCollectors: true})
	if err != nil {
		t.Fatal(err)
	}
	if body := scrape(t, host); !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_open_fds") {
		t.Errorf("the handler of a node with HostCollectors lacks go_ or process_:\n%s", body)
	}
}

// countFamilies counts the metric families of reg whose name starts with
// prefix.
func countFamilies(t *testing.T, reg prometheus.Gatherer, prefix string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), prefix) {
			n++
		}
	}
	return n
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, body)
	}
	return string(body)
}

// TestAdminCall: AdminCall has admin.Config.OnCall's shape and counts by
// the Connect code of the error: ok, the code of a Connect error, unknown
// for any other.
func TestAdminCall(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var onCall func(procedure string, err error) = m.AdminCall
	const stop = "/vmre.admin.v1.AdminService/StopVM"
	onCall(stop, nil)
	onCall(stop, connect.NewError(connect.CodeUnauthenticated, errors.New("no token")))
	onCall(stop, errors.New("plain"))
	want := `
# HELP vmre_admin_calls_total Calls to the admin service by method and result (ok or the Connect code), refused ones included.
# TYPE vmre_admin_calls_total counter
vmre_admin_calls_total{method="StopVM",result="ok"} 1
vmre_admin_calls_total{method="StopVM",result="unauthenticated"} 1
vmre_admin_calls_total{method="StopVM",result="unknown"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vmre_admin_calls_total"); err != nil {
		t.Error(err)
	}
}
