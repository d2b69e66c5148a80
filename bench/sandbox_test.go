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

// BenchmarkLaunchSandbox is Launch/vmre with and without the sandbox, in
// the same run: unsandboxed is Launcher.Launch of the minimal VM up to a
// GET /ping answered; sandboxed is the same through sandbox.Command with
// the default policy at best-effort, its report read: the init step
// re-executes this binary (the node), applies the policy and execs the VM;
// sandboxed-small-init runs the init step from bench/internal/sandboxinit,
// a static program that does nothing else (sandbox.Options.Executable).
// Each reports the median of its launches (median-ns/launch);
// docs/SANDBOX.md and docs/PERFORMANCE.md hold the figures of
// `-benchtime 40x`.
func BenchmarkLaunchSandbox(b *testing.B) {
	for _, name := range []string{"unsandboxed", "sandboxed", "sandboxed-small-init"} {
		sandboxed := name != "unsandboxed"
		b.Run(name, func(b *testing.B) {
			h := newVMRE(b, launcher.Config{})
			o := sandbox.Options{Level: sandbox.BestEffort, DataDir: b.TempDir(), TempDir: b.TempDir()}
			if name == "sandboxed-small-init" {
				o.Executable = plugins(b).initStep
			}
			if sandboxed && sandbox.LandlockABI() == 0 {
				b.Skip("this kernel has no Landlock: the sandbox applies limits and no_new_privs only")
			}
			var launches []time.Duration
			defer func() { b.ReportMetric(median.Of(launches), "median-ns/launch") }()
			for b.Loop() {
				start := time.Now()
				cmd := exec.Command(h.path)
				var sc *sandbox.Cmd
				if sandboxed {
					var err error
					if sc, err = sandbox.Command(cmd, sandbox.Policy{}, o); err != nil {
						b.Fatal(err)
					}
					cmd = sc.Cmd
				}
				rt, err := h.launchCmd(context.Background(), cmd)
				if sc != nil {
					if _, rerr := sc.Report(); rerr != nil && err == nil {
						err = rerr
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				launches = append(launches, time.Since(start))
				b.StopTimer()
				if err := h.stop(rt); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
