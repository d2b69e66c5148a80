package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmre/vmre"
)

// vmreModule is the module whose version vmre_build_info reports.
const vmreModule = "github.com/vmre/vmre"

// buildInfo is vmre_build_info: always 1, with vmre's version (the
// module's, or "devel" in a build from a checkout), the Go version and
// the native protocol version, as Prometheus' own build_info metrics do.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vmre_build_info",
		Help: "Always 1: vmre's version, the Go version it was built with, and the native protocol version it speaks.",
		ConstLabels: prometheus.Labels{
			"version":   moduleVersion(),
			"goversion": runtime.Version(),
			"protocol":  strconv.FormatUint(uint64(vmre.ProtocolVersion), 10),
		},
	})
	g.Set(1)
	return g
}

// moduleVersion is vmre's module version in this program: the main
// module's in vmre's own commands, the dependency's in an embedder's.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	m := &bi.Main
	for _, dep := range bi.Deps {
		if dep.Path == vmreModule {
			m = dep
		}
	}
	if m.Path != vmreModule || m.Version == "" || m.Version == "(devel)" {
		return "devel"
	}
	return m.Version
}
