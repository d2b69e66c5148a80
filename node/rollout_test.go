//go:build linux

package node_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// The rollouts of real example VMs and of bad versions of them. A bad
// version is a script that runs badVM (the example VM's program, other
// bytes) with a flag that makes it bad, or that exits at once; what runs
// is checked by the digest of /proc/PID/exe.

// exitsAtOnce is a version that exits 1 at start, as a binary that cannot
// open its database does.
var exitsAtOnce = []byte("#!/bin/sh\necho 'fatal: cannot open the chain database' >&2\nexit 1\n")

// badScript is a version that runs badVM with args.
func badScript(args string) []byte { return []byte("#!/bin/sh\nexec " + badVM + " " + args + "\n") }

// exeDigest is the SHA-256 of the bytes that the process pid runs: a
// file, the node's copy or a sealed memfd alike.
func exeDigest(t *testing.T, pid int) string {
	t.Helper()
	d, ok := exeDigestOf(pid)
	if !ok {
		t.Fatalf("pid %d runs no more", pid)
	}
	return d
}

// exeDigestOf is exeDigest of a process that may be gone.
func exeDigestOf(pid int) (string, bool) {
	f, err := os.Open(filepath.Join("/proc", itoa(pid), "exe"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// runningAt waits until the VM name runs version digest, with a pid not
// among not, and checks that the process runs those bytes. A version the
// node runs from its file before it has kept its bytes (an unpinned VM's
// first run) shows no version: its process's bytes tell.
func (tn *testNode) runningAt(t *testing.T, name, digest string, not ...int) supervise.VM {
	t.Helper()
	vm := tn.states.wait(t, name, supervise.StateRunning, func(vm supervise.VM) bool {
		if slices.Contains(not, vm.Pid) {
			return false
		}
		if vm.Version == "" {
			d, ok := exeDigestOf(vm.Pid)
			return ok && d == digest
		}
		return vm.Version == digest
	})
	if got := exeDigest(t, vm.Pid); got != digest {
		t.Fatalf("%s (pid %d) is shown at version %s but runs the bytes of %s", name, vm.Pid, digest, got)
	}
	return vm
}

// ranAt waits until the VM name runs version digest, as its state shows
// it: the node may replace the run before its bytes can be read.
func (tn *testNode) ranAt(t *testing.T, name, digest string) supervise.VM {
	t.Helper()
	return tn.states.wait(t, name, supervise.StateRunning, func(vm supervise.VM) bool { return vm.Version == digest })
}

// kept waits until the node has kept the bytes of the versions of name:
// after a first run from its file, it keeps them in the background, and
// nothing signals it.
func (tn *testNode) kept(t *testing.T, name string, digests ...string) {
	t.Helper()
	if !vmretest.Eventually(func() bool {
		h := tn.versions(t, name)
		for _, d := range digests {
			if !h[d].GetKept() {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the node kept no copy of %s's versions %v within %s: %v", name, digests, vmretest.WaitTimeout, tn.versions(t, name))
	}
}

// versions returns the VM's history through the admin API, by digest.
func (tn *testNode) versions(t *testing.T, name string) map[string]*adminv1.Version {
	t.Helper()
	res, err := tn.admin.History(t.Context(), connect.NewRequest(&adminv1.HistoryRequest{Name: name}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*adminv1.Version{}
	for _, v := range res.Msg.GetVersions() {
		out[v.GetDigest()] = v
	}
	return out
}

// writeFile writes data to the plugin at path: by a rename over it, or
// in place (the same inode, truncated and written).
func writeFile(t *testing.T, path string, data []byte, inPlace bool) string {
	t.Helper()
	target := path + ".new"
	if inPlace {
		target = path // opened with O_TRUNC: the same inode
	}
	if err := vmretest.WriteExecutable(target, data, 0o755); err != nil {
		t.Fatal(err) // text file busy, were the node running the file itself
	}
	if !inPlace {
		if err := os.Rename(target, path); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestRolloutGood: a changed file rolls out by replace: the new bytes
// run, the old version is superseded, the metrics count it. The time the
// VM was down is measured (BenchmarkRollout measures it properly).
func TestRolloutGood(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "vm")
	path := filepath.Join(dir, "vm")
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure})
	v1 := digestOf(t, path)
	old := tn.runningAt(t, "vm", v1)

	v2 := writeFile(t, path, append(readFile(t, exampleVM), "version 2"...), false)
	if report := reload(t, tn); !slices.Equal(report.GetChanged(), []string{"vm"}) {
		t.Fatalf("reload: %v", report)
	}
	done, _ := tn.rollouts.wait(t, "vm", "healthy", 0)
	if done.From != v1 || done.To != v2 || done.Strategy != supervise.Replace || done.Phase != supervise.RolloutSucceeded {
		t.Fatalf("the rollout: %+v", done)
	}
	now := tn.runningAt(t, "vm", v2)
	if !vmretest.ProcessGone(old.Pid) {
		t.Errorf("the old run (pid %d) runs on", old.Pid)
	}
	h := tn.versions(t, "vm")
	if h[v1].GetResult() != adminv1.VersionResult_VERSION_RESULT_SUPERSEDED || h[v2].GetResult() != adminv1.VersionResult_VERSION_RESULT_RUNNING ||
		!h[v1].GetKept() || !h[v2].GetKept() {
		t.Errorf("history: %v", h)
	}
	if vm := tn.vms(t)["vm"]; vm.GetDigest() != v2 || vm.GetRollout().GetPhase() != adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED {
		t.Errorf("ListVMs: digest %s, rollout %v", vm.GetDigest(), vm.GetRollout())
	}
	metrics := get(t, tn.url+"/metrics")
	for _, want := range []string{`vmre_rollouts_total{result="succeeded",vm="vm"} 1`, `vmre_vm_version_info{digest="` + v2 + `",vm="vm"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if down := downtime(tn.states, "vm", old.Pid, now.Pid); down > 0 {
		t.Logf("down from the old run's last state to the new run's handshake: %s", down)
	}
}

// downtime is the time from the last change of state of the run from to
// the first of the run to that shows it running.
func downtime(s *states, name string, from, to int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last, up time.Time
	for _, vm := range s.list {
		switch {
		case vm.Name != name:
		case vm.Pid == from && vm.State == supervise.StateRunning:
			last = vm.Since
		case vm.Pid == to && vm.State == supervise.StateRunning && up.IsZero():
			up = vm.Since
		}
	}
	return up.Sub(last)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRolloutBadVersions: a new version that exits at once, hangs before
// its handshake, handshakes and fails its health probe, or handshakes and
// exits after 2s with a min-healthy time of 5s, is rolled back by itself:
// the old bytes run again, the history says why, and neither a reload nor
// a restart of the node rolls the bad version out again.
func TestRolloutBadVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		bad     []byte
		rollout node.RolloutConfig
		cause   []string
	}{
		{"exits at once", exitsAtOnce, node.RolloutConfig{},
			[]string{"exit code 1 after", "before its handshake", "fatal: cannot open the chain database"}},
		{"hangs before its handshake", badScript("--no-handshake"), node.RolloutConfig{HealthyDeadline: time.Second},
			[]string{"no handshake within the healthy deadline of 1s"}},
		{"fails its health probe", badScript("--unhealthy"), node.RolloutConfig{HealthyDeadline: 1500 * time.Millisecond},
			[]string{"not healthy within the healthy deadline of 1.5s", "not_serving"}},
		{"exits after 2s, min-healthy 5s", badScript("--exit-after 2s"), node.RolloutConfig{MinHealthy: 5 * time.Second},
			[]string{"exit code 1 after 2", "before it was healthy for 5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, data := pluginDir(t, "vm"), t.TempDir()
			path := filepath.Join(dir, "vm")
			cfg := node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure, Rollout: tc.rollout}
			tn := startNode(t, cfg)
			v1 := digestOf(t, path)
			old := tn.runningAt(t, "vm", v1)

			bad := writeFile(t, path, tc.bad, false)
			if report := reload(t, tn); !slices.Equal(report.GetChanged(), []string{"vm"}) {
				t.Fatalf("reload: %v", report)
			}
			reverted, _ := tn.rollouts.wait(t, "vm", "reverted", 0)
			for _, want := range tc.cause {
				if reverted.Err == nil || !strings.Contains(reverted.Err.Error(), want) {
					t.Errorf("the rollout's cause %v lacks %q", reverted.Err, want)
				}
			}
			if elapsed, limit := reverted.Ended.Sub(reverted.Started), reverted.HealthyDeadline+5*time.Second; elapsed > limit {
				t.Errorf("reverted after %s, beyond its deadline of %s", elapsed, reverted.HealthyDeadline)
			}
			tn.runningAt(t, "vm", v1, old.Pid)
			h := tn.versions(t, "vm")
			if v := h[bad]; v.GetResult() != adminv1.VersionResult_VERSION_RESULT_ROLLED_BACK || !strings.Contains(v.GetReason(), tc.cause[0]) ||
				!strings.HasPrefix(v.GetSummary(), "rolled back: ") {
				t.Errorf("the bad version in the history: %v", v)
			}
			if v := h[v1]; v.GetResult() != adminv1.VersionResult_VERSION_RESULT_RUNNING {
				t.Errorf("the old version in the history: %v", v)
			}

			// Not tried again: neither at a reload, nor after a restart of
			// the node, whose file holds the bad version still.
			if report := reload(t, tn); !slices.Equal(report.GetKnownBad(), []string{"vm"}) || len(report.GetChanged()) != 0 {
				t.Errorf("a reload after the revert: %v; want vm known bad", report)
			}
			tn.stop()
			again := startNode(t, cfg)
			again.runningAt(t, "vm", v1)
			if report := reload(t, again); !slices.Equal(report.GetKnownBad(), []string{"vm"}) {
				t.Errorf("a reload after the node's restart: %v; want vm known bad", report)
			}
			if n := again.rollouts.count(); n != 0 {
				t.Errorf("the restarted node made %d rollout events; want none", n)
			}
		})
	}
}

// TestRolloutOverwrittenInPlace: the plugin's file rewritten in place by
// a bad version (the same inode: the old bytes are nowhere in the plugin
// directory any more) rolls back to the old bytes all the same: the
// node's copy of them, unpinned, or the sealed copy, pinned. An unpinned
// VM's first run is of its file, which the kernel lets no one rewrite
// while it runs (text file busy); the node keeps its bytes meanwhile, and
// its later launches run the copy, as here after a restart.
func TestRolloutOverwrittenInPlace(t *testing.T) {
	t.Parallel()
	for _, pinned := range []bool{false, true} {
		t.Run(map[bool]string{false: "unpinned", true: "pinned"}[pinned], func(t *testing.T) {
			t.Parallel()
			dir := pluginDir(t, "vm")
			path := filepath.Join(dir, "vm")
			v1 := digestOf(t, path)
			cfg := node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure}
			if pinned {
				cfg.Pins, cfg.RequirePins = filepath.Join(t.TempDir(), "pins"), true
				writePin(t, cfg.Pins, "vm", v1)
			}
			tn := startNode(t, cfg)
			old := tn.runningAt(t, "vm", v1)
			if !pinned {
				tn.kept(t, "vm", v1)
				if _, err := tn.admin.RestartVM(t.Context(), connect.NewRequest(&adminv1.RestartVMRequest{Name: "vm"})); err != nil {
					t.Fatal(err)
				}
				old = tn.runningAt(t, "vm", v1, old.Pid)
			}
			bad := writeFile(t, path, exitsAtOnce, true)
			if pinned {
				writePin(t, cfg.Pins, "vm", bad)
			}
			reload(t, tn)
			tn.rollouts.wait(t, "vm", "reverted", 0)
			tn.runningAt(t, "vm", v1, old.Pid)
			if got := digestOf(t, path); got != bad {
				t.Fatalf("the file holds %s, not the bad version", got)
			}
		})
	}
}

// writePin makes the pins file pin file to digest.
func writePin(t *testing.T, pins, file, digest string) {
	t.Helper()
	if err := os.WriteFile(pins, []byte(digest+"  "+file+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRolloutStartFirst: the new version starts beside the old run, which
// keeps answering RPCs until the VM switches to the new one once healthy;
// then the old run stops. A new version that fails leaves the old run
// untouched: the same process, answering all along.
func TestRolloutStartFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		next []byte // the new version
		ends string // the rollout event that ends it
	}{
		{"healthy", append(readFile(t, exampleVM), "version 2"...), "healthy"},
		{"unhealthy", badScript("--unhealthy"), "reverted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := pluginDir(t, "vm")
			path := filepath.Join(dir, "vm")
			tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure,
				Rollout: node.RolloutConfig{StartFirst: []string{"vm"}, MinHealthy: time.Second, HealthyDeadline: 2 * time.Second}})
			v1 := digestOf(t, path)
			old := tn.runningAt(t, "vm", v1)

			// A client of the old run calls it until the VM no longer
			// shows it: a call that fails while the VM shows it fails the
			// test.
			var calls, failures atomic.Int64
			stop := make(chan struct{})
			called := make(chan struct{})
			go func() {
				defer close(called)
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, err := launcher.ProbeHealth(t.Context(), old.Addr)
					if vm, _ := tn.n.Get("vm"); vm.Pid != old.Pid {
						return // the VM switched; the old run stops
					}
					if err != nil {
						failures.Add(1)
						t.Errorf("the old run failed a call while the VM showed it: %v", err)
						return
					}
					calls.Add(1)
				}
			}()
			v2 := writeFile(t, path, tc.next, false)
			reload(t, tn)
			r, _ := tn.rollouts.wait(t, "vm", tc.ends, 0)
			if r.Strategy != supervise.StartFirst {
				t.Errorf("the rollout's strategy: %s", r.Strategy)
			}
			close(stop)
			<-called
			if calls.Load() == 0 || failures.Load() != 0 {
				t.Errorf("the old run answered %d calls and failed %d", calls.Load(), failures.Load())
			}
			switch tc.ends {
			case "healthy":
				tn.runningAt(t, "vm", v2)
				if !vmretest.ProcessGone(old.Pid) {
					t.Errorf("the old run (pid %d) runs on after the switch", old.Pid)
				}
			default:
				if vm, _ := tn.n.Get("vm"); vm.Pid != old.Pid || vm.State != supervise.StateRunning || vmretest.ProcessGone(old.Pid) {
					t.Errorf("after the failed rollout: %s pid %d; want the old run, pid %d, untouched", vm.State, vm.Pid, old.Pid)
				}
				if _, err := launcher.ProbeHealth(t.Context(), old.Addr); err != nil {
					t.Errorf("the old run after the failed rollout: %v", err)
				}
			}
		})
	}
}

// TestRolloutNodeRestart: a node stopped during a rollout comes back with
// a consistent state: the VM runs the version it ran before the rollout,
// whose history is intact, and the new version rolls out again.
func TestRolloutNodeRestart(t *testing.T) {
	t.Parallel()
	dir, data := pluginDir(t, "vm"), t.TempDir()
	path := filepath.Join(dir, "vm")
	v1 := digestOf(t, path)
	slow := node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure,
		Rollout: node.RolloutConfig{MinHealthy: time.Hour, HealthyDeadline: 2 * time.Hour}}
	first := startNode(t, slow)
	first.runningAt(t, "vm", v1)
	v2 := writeFile(t, path, append(readFile(t, exampleVM), "version 2"...), false)
	reload(t, first)
	first.runningAt(t, "vm", v2) // handshaken, not yet healthy
	if h := first.versions(t, "vm"); h[v2].GetResult() != adminv1.VersionResult_VERSION_RESULT_ROLLING_OUT {
		t.Fatalf("during the rollout: %v", h)
	}
	first.stop()
	if r, _ := first.rollouts.wait(t, "vm", "failed", 0); r.Phase != supervise.RolloutInterrupted {
		t.Errorf("the rollout at the node's stop: %s", r.Phase)
	}

	second := startNode(t, node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure})
	second.ranAt(t, "vm", v1) // its rollout of v2 follows at once
	done, _ := second.rollouts.wait(t, "vm", "healthy", 0)
	if done.From != v1 || done.To != v2 {
		t.Errorf("the rollout after the restart: %+v", done)
	}
	second.runningAt(t, "vm", v2)
	h := second.versions(t, "vm")
	if h[v1].GetResult() != adminv1.VersionResult_VERSION_RESULT_SUPERSEDED || h[v2].GetResult() != adminv1.VersionResult_VERSION_RESULT_RUNNING {
		t.Errorf("the history after the restart: %v", h)
	}
}

// TestRolloutPins: with pins, a file changed without its pin is refused
// and the VM runs on; the pin changed with it rolls it out. A rollback to
// a version the pins file no longer pins is refused, and says so, unless
// forced.
func TestRolloutPins(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "vm")
	path := filepath.Join(dir, "vm")
	v1 := digestOf(t, path)
	pins := filepath.Join(t.TempDir(), "pins")
	writePin(t, pins, "vm", v1)
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Pins: pins, RequirePins: true, Restart: supervise.OnFailure})
	old := tn.runningAt(t, "vm", v1)

	v2 := writeFile(t, path, append(readFile(t, exampleVM), "version 2"...), false)
	report := reload(t, tn)
	if len(report.GetChanged()) != 0 || len(report.GetFailed()) != 1 || report.GetFailed()[0].GetKind() != "pin mismatch" {
		t.Fatalf("a reload of a file changed without its pin: %v", report)
	}
	if vm, _ := tn.n.Get("vm"); vm.Pid != old.Pid || vm.Version != v1 {
		t.Fatalf("after a refused change: pid %d at %s; want pid %d at %s", vm.Pid, vm.Version, old.Pid, v1)
	}
	writePin(t, pins, "vm", v2)
	if report := reload(t, tn); !slices.Equal(report.GetChanged(), []string{"vm"}) {
		t.Fatalf("a reload of a file changed with its pin: %v", report)
	}
	tn.rollouts.wait(t, "vm", "healthy", 0)
	tn.runningAt(t, "vm", v2)

	_, err := tn.admin.Rollback(t.Context(), connect.NewRequest(&adminv1.RollbackRequest{Name: "vm", Wait: true}))
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeFailedPrecondition || cerr.Meta().Get(node.RefusalKey) != node.RefusedNotPinned ||
		!strings.Contains(err.Error(), "not in the pins file") || !strings.Contains(err.Error(), v1[:12]) {
		t.Fatalf("a rollback to a version no longer pinned: %v; want failed_precondition, not pinned", err)
	}
	res, err := tn.admin.Rollback(t.Context(), connect.NewRequest(&adminv1.RollbackRequest{Name: "vm", Force: true, Wait: true}))
	if err != nil || res.Msg.GetRollout().GetPhase() != adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED {
		t.Fatalf("a forced rollback: %v %v", res, err)
	}
	tn.runningAt(t, "vm", v1, old.Pid)
}

// TestRolloutRollback: an operator's rollback goes back to the version
// before; a reload does not roll the file's version out again, a forced
// rollout does.
func TestRolloutRollback(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "vm")
	path := filepath.Join(dir, "vm")
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure})
	v1 := digestOf(t, path)
	first := tn.runningAt(t, "vm", v1)
	v2 := writeFile(t, path, append(readFile(t, exampleVM), "version 2"...), false)
	reload(t, tn)
	tn.rollouts.wait(t, "vm", "healthy", 0)
	second := tn.runningAt(t, "vm", v2)

	res, err := tn.admin.Rollback(t.Context(), connect.NewRequest(&adminv1.RollbackRequest{Name: "vm", Wait: true}))
	if err != nil || !res.Msg.GetChanged() || res.Msg.GetRollout().GetToDigest() != v1 || res.Msg.GetRollout().GetPhase() != adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED {
		t.Fatalf("Rollback: %v %v", res, err)
	}
	tn.runningAt(t, "vm", v1, first.Pid)
	if v := tn.versions(t, "vm")[v2]; v.GetResult() != adminv1.VersionResult_VERSION_RESULT_ROLLED_BACK || !strings.Contains(v.GetReason(), "an operator rolled back") {
		t.Errorf("the version rolled back from: %v", v)
	}
	if report := reload(t, tn); !slices.Equal(report.GetKnownBad(), []string{"vm"}) {
		t.Errorf("a reload after the rollback: %v; want vm known bad", report)
	}
	_, err = tn.admin.Rollout(t.Context(), connect.NewRequest(&adminv1.RolloutRequest{Name: "vm", Wait: true}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "unless forced") {
		t.Errorf("a rollout of the version rolled back from: %v; want it refused", err)
	}
	rolled, err := tn.admin.Rollout(t.Context(), connect.NewRequest(&adminv1.RolloutRequest{Name: "vm", Force: true, Wait: true}))
	if err != nil || rolled.Msg.GetRollout().GetPhase() != adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED {
		t.Fatalf("a forced rollout: %v %v", rolled, err)
	}
	tn.runningAt(t, "vm", v2, second.Pid)
	if nothing, err := tn.admin.Rollout(t.Context(), connect.NewRequest(&adminv1.RolloutRequest{Name: "vm"})); err != nil || nothing.Msg.GetChanged() {
		t.Errorf("a rollout of the version that runs: %v %v; want nothing to do", nothing, err)
	}
}

// TestRolloutStoppedVM: a VM an operator stopped stays stopped when its
// file changes; its start rolls the new version out.
func TestRolloutStoppedVM(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "vm")
	path := filepath.Join(dir, "vm")
	tn := startNode(t, node.Config{PluginDir: dir, DataDir: t.TempDir(), Restart: supervise.OnFailure})
	tn.runningAt(t, "vm", digestOf(t, path))
	if _, err := tn.admin.StopVM(t.Context(), connect.NewRequest(&adminv1.StopVMRequest{Name: "vm"})); err != nil {
		t.Fatal(err)
	}
	v2 := writeFile(t, path, append(readFile(t, exampleVM), "version 2"...), false)
	reload(t, tn)
	if vm := tn.vms(t)["vm"]; vm.GetState() != adminv1.VMState_VM_STATE_STOPPED || !strings.Contains(vm.GetPending(), v2[:12]+" at its next start") {
		t.Fatalf("the stopped VM after its file changed: %s, pending %q", vm.GetState(), vm.GetPending())
	}
	if _, err := tn.admin.StartVM(t.Context(), connect.NewRequest(&adminv1.StartVMRequest{Name: "vm"})); err != nil {
		t.Fatal(err)
	}
	tn.rollouts.wait(t, "vm", "healthy", 0)
	tn.runningAt(t, "vm", v2)
}

// rollout-node DATADIR PLUGINDIR EXAMPLEVM runs a node whose VM vm is
// rolling out a new version that takes an hour to be healthy: it prints
// "rolling PID" once the new version runs, and runs until it is killed.
func init() { helpers["rollout-node"] = rolloutNode }

func rolloutNode(args []string) int {
	data, plugins, example := args[0], args[1], args[2]
	running := make(chan supervise.VM, 16)
	n, err := node.New(node.Config{PluginDir: plugins, DataDir: data, Listener: mustListen(), Rollout: node.RolloutConfig{MinHealthy: time.Hour, HealthyDeadline: 2 * time.Hour},
		Hooks: &node.Hooks{State: func(vm supervise.VM) {
			if vm.State == supervise.StateRunning {
				running <- vm
			}
		}}})
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	go n.Run(context.Background())
	first := <-running
	if err := appendCopy(example, filepath.Join(plugins, "vm"), []byte("version 2")); err != nil {
		fmt.Println("write:", err)
		return 1
	}
	if _, err := n.Reload(context.Background()); err != nil {
		fmt.Println("reload:", err)
		return 1
	}
	for vm := range running {
		if vm.Version != first.Version {
			fmt.Println("rolling", vm.Pid)
			break
		}
	}
	select {} // until killed
}

func mustListen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln
}

// TestRolloutNodeKilled: a node killed with SIGKILL in the middle of a
// rollout, its VMs with it, comes back consistent: the VM runs the
// version it ran before the rollout, the history knows both, and the new
// version rolls out again, to its end.
func TestRolloutNodeKilled(t *testing.T) {
	t.Parallel()
	dir, data := pluginDir(t, "vm"), t.TempDir()
	v1 := digestOf(t, filepath.Join(dir, "vm"))
	cmd := vmretest.Command("rollout-node", data, dir, exampleVM)
	var stderr vmretest.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(vmretest.WaitTimeout, func() { cmd.Process.Kill() })
	defer guard.Stop()
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	pid, ok := strings.CutPrefix(strings.TrimSpace(line), "rolling ")
	if !ok {
		t.Fatalf("the node did not get to its rollout: %q\n%s", line, stderr.String())
	}
	v2 := digestOf(t, filepath.Join(dir, "vm"))
	if !vmretest.Eventually(func() bool { return vmretest.ProcessGone(atoi(t, pid)) }) {
		t.Fatalf("the new version (pid %s) outlived its killed node", pid)
	}

	tn := startNode(t, node.Config{PluginDir: dir, DataDir: data, Restart: supervise.OnFailure})
	tn.ranAt(t, "vm", v1) // its rollout of v2 follows at once
	done, _ := tn.rollouts.wait(t, "vm", "healthy", 0)
	if done.From != v1 || done.To != v2 {
		t.Errorf("the rollout after the restart: %+v", done)
	}
	tn.runningAt(t, "vm", v2)
	h := tn.versions(t, "vm")
	if h[v1].GetResult() != adminv1.VersionResult_VERSION_RESULT_SUPERSEDED || h[v2].GetResult() != adminv1.VersionResult_VERSION_RESULT_RUNNING {
		t.Errorf("the history after the restart: %v", h)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRolloutWithoutDataDir: a node without a data directory keeps no
// copy in the background (its VM runs from its file), but keeps the
// version that runs before a rollout, from its process, after a rename
// over its file: the revert runs the old bytes.
func TestRolloutWithoutDataDir(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "vm")
	path := filepath.Join(dir, "vm")
	tn := startNode(t, node.Config{PluginDir: dir, Restart: supervise.OnFailure})
	v1 := digestOf(t, path)
	old := tn.runningAt(t, "vm", v1)
	writeFile(t, path, exitsAtOnce, false)
	reload(t, tn)
	if r, _ := tn.rollouts.wait(t, "vm", "reverted", 0); r.From != v1 {
		t.Errorf("the rollout from %q; want %s, the version kept from its process", r.From, v1)
	}
	tn.runningAt(t, "vm", v1, old.Pid)
}
