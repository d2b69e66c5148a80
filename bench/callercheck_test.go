package bench

import (
	"context"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/launcher"
)

// BenchmarkCallerCheck is what the engine's check that an Initialize comes
// from the launched VM (docs/PROTOCOL.md, "The caller check") adds to a
// launch. Each op launches the minimal VM twice, as BenchmarkLaunch's vmre
// does (exec to an answered GET /ping), by two Launchers of one run, in
// turn: one with the check (the default), one without
// (launcher.Config.NoCallerCheck), so that both see the same load. It
// reports the median launch of each (checked-ns/launch,
// unchecked-ns/launch) and the median of the engine's time on the VM's
// Initialize (checked-initialize-ns, unchecked-initialize-ns), where the
// check runs. Stopping the VMs is outside the timed parts.
func BenchmarkCallerCheck(b *testing.B) {
	type side struct {
		h          *vmreHost
		launch     []time.Duration
		initialize []time.Duration
	}
	newSide := func(noCheck bool) *side {
		s := &side{}
		s.h = newVMRE(b, launcher.Config{NoCallerCheck: noCheck, Hooks: &launcher.Hooks{EngineCall: func(i launcher.EngineCallInfo) {
			if i.Procedure == runtimev1connect.RuntimeServiceInitializeProcedure {
				s.initialize = append(s.initialize, i.Elapsed) // one launch at a time
			}
		}}})
		return s
	}
	checked, unchecked := newSide(false), newSide(true)
	for b.Loop() {
		for _, s := range []*side{checked, unchecked} {
			start := time.Now()
			rt, err := s.h.launch(context.Background())
			s.launch = append(s.launch, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.h.stop(rt); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(median.Of(checked.launch), "checked-ns/launch")
	b.ReportMetric(median.Of(unchecked.launch), "unchecked-ns/launch")
	b.ReportMetric(median.Of(checked.initialize), "checked-initialize-ns")
	b.ReportMetric(median.Of(unchecked.initialize), "unchecked-initialize-ns")
}
