//go:build linux

package bench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/sandbox"
)

// BenchmarkLaunchSandbox is Launch/vmre without the sandbox and with it in
// each of the ways its policy can be applied, one launch of each kind in
// each iteration, so that all meet the same machine. unsandboxed is
// Launcher.Launch of the minimal VM up to a GET /ping answered; the others
// launch it through sandbox.Command with the default policy at
// best-effort, their report read:
//
//   - ptrace: the launcher starts it with sandbox.Start, which applies the
//     policy to the VM stopped at its first instruction (a node's way);
//   - exec: the init step re-executes this binary (the node), applies the
//     policy to itself and execs the VM;
//   - small-init: the init step is bench/internal/sandboxinit, a static
//     program that does nothing else (sandbox.Options.Executable).
//
// The VM runs without client.Serve's warm-up (minvm -no-warm-up) in every
// kind: the warm-up calls the VM's own server on a port it picks as it
// runs, which the sandbox's network rule cannot grant, so a sandboxed VM
// does without it, and a launch with it would compare a VM that warms up
// with one that does not.
//
// An op is one launch of each kind; the metrics are the medians of each
// kind's launches, and the medians of what ptrace and exec added to the
// unsandboxed launch of the same iteration (added-ns, exec-added-ns).
// docs/SANDBOX.md holds the figures of `-benchtime 40x`.
func BenchmarkLaunchSandbox(b *testing.B) {
	if sandbox.LandlockABI() == 0 {
		b.Skip("this kernel has no Landlock: the sandbox applies limits and no_new_privs only")
	}
	h := newVMRE(b, launcher.Config{})
	traced := newVMRE(b, launcher.Config{Start: sandbox.Start})
	base := sandbox.Options{Level: sandbox.BestEffort, DataDir: b.TempDir(), TempDir: b.TempDir()}
	small := base
	small.Executable = plugins(b).initStep
	kinds := []struct {
		name   string
		h      *vmreHost
		o      *sandbox.Options
		method string
	}{
		{"unsandboxed", h, nil, ""},
		{"ptrace", traced, &base, sandbox.MethodPtrace},
		{"exec", h, &base, sandbox.MethodExec},
		{"small-init", h, &small, sandbox.MethodExec},
	}
	times := make([][]time.Duration, len(kinds))
	var added, execAdded []time.Duration
	defer func() {
		for i, k := range kinds {
			b.ReportMetric(median.Of(times[i]), k.name+"-ns")
		}
		b.ReportMetric(median.Of(added), "added-ns")
		b.ReportMetric(median.Of(execAdded), "exec-added-ns")
	}()
	for b.Loop() {
		for i, k := range kinds {
			d, rt, err := launchSandboxed(k.h, k.o, k.method)
			if err != nil {
				b.Fatalf("%s: %v", k.name, err)
			}
			times[i] = append(times[i], d)
			b.StopTimer()
			if err := k.h.stop(rt); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		n := len(times[0])
		added = append(added, times[1][n-1]-times[0][n-1])
		execAdded = append(execAdded, times[2][n-1]-times[0][n-1])
	}
}

// launchSandboxed launches the minimal VM, through the sandbox when o is
// set, and returns how long it took to its first answered call. A
// sandboxed launch must have applied its policy by method.
func launchSandboxed(h *vmreHost, o *sandbox.Options, method string) (time.Duration, *launcher.Runtime, error) {
	start := time.Now()
	cmd := exec.Command(h.path, "-no-warm-up")
	if o == nil {
		rt, err := h.launchCmd(context.Background(), cmd)
		return time.Since(start), rt, err
	}
	sc, err := sandbox.Command(cmd, sandbox.Policy{}, *o)
	if err != nil {
		return 0, nil, err
	}
	rt, err := h.launchCmd(context.Background(), sc.Cmd)
	report, rerr := sc.Report()
	d := time.Since(start)
	if err == nil && rerr == nil && report.Method != method {
		rerr = fmt.Errorf("the policy was applied by %s, not %s", report.Method, method)
	}
	if rerr != nil && err == nil {
		h.stop(rt)
		err = rerr
	}
	return d, rt, err
}
