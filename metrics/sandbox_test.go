package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/supervise"
)

// vmre_vm_sandbox has one series per level for each VM whose level is
// known, 1 for its own; a VM with none (not launched yet, remote) and a
// level of a VM the node no longer has show nothing.
func TestSandboxLevels(t *testing.T) {
	reg := prometheus.NewRegistry()
	vms := func() []supervise.VM {
		return []supervise.VM{{Name: "a"}, {Name: "b"}, {Name: "remote", Remote: true}}
	}
	levels := &metrics.SandboxLevels{Levels: []string{"off", "partial", "full"},
		Of: func() map[string]string { return map[string]string{"a": "full", "b": "partial", "gone": "full"} }}
	if _, err := metrics.New(metrics.Config{VMs: vms, Sandbox: levels, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP vmre_vm_sandbox How much of a VM's sandbox policy holds, as of its last launch: one series per level, 1 for the VM's: full (every protective rule applied), partial (some not: the admin API's sandbox rules say which), off (no sandbox).
# TYPE vmre_vm_sandbox gauge
vmre_vm_sandbox{level="full",vm="a"} 1
vmre_vm_sandbox{level="off",vm="a"} 0
vmre_vm_sandbox{level="partial",vm="a"} 0
vmre_vm_sandbox{level="full",vm="b"} 0
vmre_vm_sandbox{level="off",vm="b"} 0
vmre_vm_sandbox{level="partial",vm="b"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vmre_vm_sandbox"); err != nil {
		t.Error(err)
	}
}
