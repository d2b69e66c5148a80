//go:build linux

package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// BenchmarkLaunchSandbox is Launch/vmre with and without the sandbox,
// alternately in each iteration, so that both meet the same machine:
// unsandboxed is Launcher.Launch of the minimal VM up to a GET /ping
// answered; sandboxed is the same through sandbox.Command with the default
// policy at best-effort, its report read: the init step re-executes this
// binary (the node), applies the policy and execs the VM; small-init runs
// the init step from bench/internal/sandboxinit, a static program that does
// nothing else (sandbox.Options.Executable). An op is one launch of each;
// the metrics are the medians of each kind's launches and the median of
// the sandboxed launch less the unsandboxed one of the same iteration
// (added-ns). docs/SANDBOX.md holds the figures of `-benchtime 40x`.
func BenchmarkLaunchSandbox(b *testing.B) {
	if sandbox.LandlockABI() == 0 {
		b.Skip("this kernel has no Landlock: the sandbox applies limits and no_new_privs only")
	}
	h := newVMRE(b, launcher.Config{})
	base := sandbox.Options{Level: sandbox.BestEffort, DataDir: b.TempDir(), TempDir: b.TempDir()}
	small := base
	small.Executable = plugins(b).initStep
	kinds := []struct {
		name string
		o    *sandbox.Options
	}{{"unsandboxed", nil}, {"sandboxed", &base}, {"small-init", &small}}
	times := make([][]time.Duration, len(kinds))
	var added []time.Duration
	defer func() {
		for i, k := range kinds {
			b.ReportMetric(median.Of(times[i]), k.name+"-ns")
		}
		b.ReportMetric(median.Of(added), "added-ns")
	}()
	for b.Loop() {
		for i, k := range kinds {
			d, rt, err := launchSandboxed(h, k.o)
			if err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], d)
			b.StopTimer()
			if err := h.stop(rt); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		n := len(times[0])
		added = append(added, times[1][n-1]-times[0][n-1])
	}
}

// launchSandboxed launches the minimal VM, through the sandbox when o is
// set, and returns how long it took to its first answered call.
func launchSandboxed(h *vmreHost, o *sandbox.Options) (time.Duration, *launcher.Runtime, error) {
	start := time.Now()
	cmd := exec.Command(h.path)
	if o == nil {
		rt, err := h.launchCmd(context.Background(), cmd)
		return time.Since(start), rt, err
	}
	sc, err := sandbox.Command(cmd, sandbox.Policy{}, *o)
	if err != nil {
		return 0, nil, err
	}
	rt, err := h.launchCmd(context.Background(), sc.Cmd)
	if _, rerr := sc.Report(); rerr != nil && err == nil {
		h.stop(rt)
		err = rerr
	}
	return time.Since(start), rt, err
}
