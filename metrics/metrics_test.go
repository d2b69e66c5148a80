package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
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
