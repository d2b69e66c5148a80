package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmre/vmre/supervise"
)

// SandboxLevels tell vmre_vm_sandbox how much of each VM's sandbox policy
// holds (docs/SANDBOX.md, "The report").
type SandboxLevels struct {
	// Levels are every value of the metric's level label, in order: one
	// series each per VM.
	Levels []string
	// Of returns the level of each VM that has one, by name: that of its
	// last launch.
	Of func() map[string]string
}

// sandboxCollector reads the VMs' sandbox levels at scrape time, as
// kube-state-metrics shows a pod's phase: one series per level, 1 for the
// VM's current one.
type sandboxCollector struct {
	list   func() []supervise.VM
	levels *SandboxLevels
	label  func(name string) string // the vm label of a VM: its first alias, or its name
	desc   *prometheus.Desc
}

func newSandboxCollector(list func() []supervise.VM, levels *SandboxLevels, label func(string) string) *sandboxCollector {
	return &sandboxCollector{list: list, levels: levels, label: label,
		desc: prometheus.NewDesc("vmre_vm_sandbox",
			"How much of a VM's sandbox policy holds, as of its last launch: one series per level, 1 for the VM's: "+
				"full (every protective rule applied), partial (some not: the admin API's sandbox rules say which), off (no sandbox).",
			[]string{"vm", "level"}, nil)}
}

func (c *sandboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sandboxCollector) Collect(ch chan<- prometheus.Metric) {
	if c.list == nil || c.levels == nil || c.levels.Of == nil {
		return
	}
	of := c.levels.Of()
	for _, vm := range c.list() {
		level, ok := of[vm.Name]
		if !ok {
			continue // not launched yet, or remote
		}
		for _, l := range c.levels.Levels {
			v := 0.0
			if l == level {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, c.label(vm.Name), l)
		}
	}
}
