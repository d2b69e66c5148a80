package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/supervise"
)

// The rollouts' series label a VM as the others do: by its first alias,
// else by its name made valid UTF-8; a VM's version is the digest the node
// describes, and a VM whose digest is not known yet has none.
func TestRolloutLabels(t *testing.T) {
	const bad = "bad\xffname"
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{
		VMs: func() []supervise.VM {
			return []supervise.VM{{Name: "2ZW6HUeP", State: supervise.StateRunning}, {Name: bad, State: supervise.StateRunning},
				{Name: "fresh", State: supervise.StateRunning}}
		},
		Describe: func(name string) metrics.VMInfo {
			switch name {
			case "2ZW6HUeP":
				return metrics.VMInfo{Aliases: []string{"chainvm", "evm"}, Digest: "c3f073f9"}
			case bad:
				return metrics.VMInfo{Digest: "b1d39d15"}
			}
			return metrics.VMInfo{}
		},
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.RolloutEnded("2ZW6HUeP", "succeeded")
	m.RolloutEnded("2ZW6HUeP", "succeeded")
	m.RolloutEnded(bad, "reverted")

	want := `
# HELP vmre_rollouts_total Rollouts of new versions of VMs by how they ended: succeeded, reverted (the new version failed and the VM went back), failed (it failed and stays: no auto-revert) or interrupted (a stop, a restart, the node's end).
# TYPE vmre_rollouts_total counter
vmre_rollouts_total{result="reverted",vm="bad\\xffname"} 1
vmre_rollouts_total{result="succeeded",vm="chainvm"} 2
# HELP vmre_vm_version_info The version a VM runs, as the SHA-256 of its bytes (digest), once known: 1 for each VM of the plugin directory; the vm label is its first alias when it has one.
# TYPE vmre_vm_version_info gauge
vmre_vm_version_info{digest="b1d39d15",vm="bad\\xffname"} 1
vmre_vm_version_info{digest="c3f073f9",vm="chainvm"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vmre_rollouts_total", "vmre_vm_version_info"); err != nil {
		t.Error(err)
	}
}
