package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmre/vmre/supervise"
)

// rollouts are the collectors of the VMs' versions and rollouts.
type rollouts struct {
	ended   *prometheus.CounterVec
	version *versionCollector
}

func newRollouts(list func() []supervise.VM, label func(string) string, describe func(string) VMInfo) rollouts {
	return rollouts{
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmre_rollouts_total",
			Help: "Rollouts of new versions of VMs by how they ended: succeeded, reverted (the new version failed and the VM went back), failed (it failed and stays: no auto-revert) or interrupted (a stop, a restart, the node's end).",
		}, []string{"vm", "result"}),
		version: &versionCollector{list: list, label: label, describe: describe, desc: prometheus.NewDesc("vmre_vm_version_info",
			"The version a VM runs, as the SHA-256 of its bytes (digest), once known: 1 for each VM of the plugin directory; the vm label is its first alias when it has one.",
			[]string{"vm", "digest"}, nil)},
	}
}

func (r rollouts) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.ended, r.version}
}

// RolloutEnded counts a rollout of the VM vm by its result: succeeded,
// reverted, failed or interrupted.
func (m *Metrics) RolloutEnded(vm, result string) {
	m.rollouts.ended.WithLabelValues(m.label(vm), result).Inc()
}

// versionCollector reads the VMs' versions at scrape time.
type versionCollector struct {
	list     func() []supervise.VM
	label    func(string) string
	describe func(string) VMInfo
	desc     *prometheus.Desc
}

func (c *versionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *versionCollector) Collect(ch chan<- prometheus.Metric) {
	if c.list == nil {
		return
	}
	for _, vm := range c.list() {
		digest := vm.Version
		if c.describe != nil {
			digest = c.describe(vm.Name).Digest
		}
		if digest != "" {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.label(vm.Name), digest)
		}
	}
}
