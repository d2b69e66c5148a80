package metrics_test

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Truncated lines count as lines; an abandoned pipe counts once, as a pipe,
// not as a line that was never seen.
func TestOutputDropped(t *testing.T) {
	m := metrics.New(metrics.Source{VMs: func() []supervise.VM { return nil }})
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
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"vmre_vm_output_lines_dropped_total", "vmre_vm_output_pipes_abandoned_total"); err != nil {
		t.Error(err)
	}
}

// A VM name that is not valid UTF-8 (a plugin run by its path) becomes an
// escaped label in every series, through every hook and the scrape of the
// states, instead of the client's panic.
func TestNameNotUTF8(t *testing.T) {
	const name = "bad\xffname"
	m := metrics.New(metrics.Source{
		VMs: func() []supervise.VM {
			return []supervise.VM{{Name: name, State: supervise.StateBackoff, Restarts: 2}}
		},
		Output: func() []launcher.OutputStat {
			return []launcher.OutputStat{{VM: name, Stream: "stderr", Level: "info", Lines: 5}}
		},
	})
	hooks := m.LauncherHooks()
	hooks.Ready(launcher.ReadyInfo{VM: name})
	hooks.Handshake(launcher.HandshakeInfo{VM: name})
	hooks.LaunchFailed(&launcher.LaunchError{VM: name, Phase: launcher.PhaseExec})
	hooks.Exited(launcher.ExitInfo{VM: name})
	hooks.OutputDropped(launcher.OutputDropInfo{VM: name, Stream: "stdout", Truncated: 1, Unread: true})

	families, err := m.Registry().Gather()
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
	// backoff, lines.
	if series != 9 {
		t.Errorf("%d series with a vm label, want 9", series)
	}
}

// A refusal of the caller check counts by its reason, besides its code.
func TestOwnerRefusals(t *testing.T) {
	m := metrics.New(metrics.Source{})
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
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "vmre_engine_owner_refusals_total"); err != nil {
		t.Error(err)
	}
}
