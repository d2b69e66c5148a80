//go:build linux

package node_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// TestNodeLiveness: a VM frozen by SIGSTOP fails the node's liveness
// probes (the health probe of vmre run --check), is shown unhealthy with
// why through the admin API, is stopped gracefully (SIGCONT follows the
// SIGTERM) and launched again by its policy; the healthy VM beside it is
// left alone.
func TestNodeLiveness(t *testing.T) {
	t.Parallel()
	tn := startNode(t, node.Config{PluginDir: pluginDir(t, "frozen", "fine"), DataDir: t.TempDir(), Restart: supervise.OnFailure,
		// A probe that a VM under load answers well within its timeout.
		Liveness: supervise.Liveness{Interval: 100 * time.Millisecond, Failures: 2, Timeout: 2 * time.Second}})
	frozen := tn.states.wait(t, "frozen", supervise.StateRunning, nil)
	fine := tn.states.wait(t, "fine", supervise.StateRunning, nil)
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	watch, err := tn.admin.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()

	if err := syscall.Kill(frozen.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	unhealthy := tn.states.wait(t, "frozen", supervise.StateUnhealthy, nil)
	if !errors.Is(unhealthy.Err, supervise.ErrUnhealthy) || unhealthy.Pid != frozen.Pid {
		t.Errorf("unhealthy: pid %d, error %v; want pid %d, ErrUnhealthy", unhealthy.Pid, unhealthy.Err, frozen.Pid)
	}
	for watch.Receive() {
		vm := watch.Msg().GetVm()
		if vm.GetName() == "frozen" && vm.GetState() == adminv1.VMState_VM_STATE_UNHEALTHY {
			if !strings.Contains(vm.GetError(), "liveness probes failed in a row") {
				t.Errorf("the admin API's unhealthy VM: error %q; want the failed probes", vm.GetError())
			}
			break
		}
	}
	if err := watch.Err(); err != nil {
		t.Fatalf("WatchVMs never showed frozen unhealthy: %v", err)
	}
	again := tn.states.wait(t, "frozen", supervise.StateRunning, func(vm supervise.VM) bool { return vm.Pid != frozen.Pid })
	if again.LastExit == nil || again.LastExit.Killed() {
		t.Errorf("the frozen run ended %v; want a graceful exit (SIGCONT after SIGTERM), not SIGKILL", again.LastExit)
	}
	if vm := tn.vms(t)["fine"]; vm.GetPid() != int32(fine.Pid) || vm.GetLaunches() != 1 {
		t.Errorf("the healthy VM: %v; want its first run, untouched", vm)
	}
}
