package admin_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/supervise"
)

// TestWatchVMsSeesRemoval: a VM removed from the supervisor is told to the
// watchers as gone, with its last state (stopped), after that state; it is
// no longer listed, and a VM of the same name added again is watched as
// any other.
func TestWatchVMsSeesRemoval(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	n.add(t, "alpha", "serve", supervise.Never)
	n.add(t, "beta", "serve", supervise.Never)
	first := n.running(t, "alpha", 0)
	n.running(t, "beta", 0)
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	stream, err := n.client.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for range 2 { // the current state of each
		if !stream.Receive() || stream.Msg().GetGone() {
			t.Fatalf("current state: %v, %v", stream.Msg(), stream.Err())
		}
	}
	if err := n.sup.Remove(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for stream.Receive() {
		m := stream.Msg()
		seen = append(seen, m.GetVm().GetName()+" "+m.GetVm().GetState().String())
		if m.GetGone() {
			if m.GetVm().GetName() != "alpha" || m.GetVm().GetState() != adminv1.VMState_VM_STATE_STOPPED ||
				m.GetVm().GetLaunches() != first.GetLaunches() {
				t.Errorf("gone: %v; want alpha, stopped, with its launches", m.GetVm())
			}
			break
		}
	}
	if len(seen) < 2 || seen[len(seen)-2] != "alpha VM_STATE_STOPPED" {
		t.Fatalf("changes %v (%v); want alpha stopped, then gone", seen, stream.Err())
	}
	res, err := n.client.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if vms := res.Msg.GetVms(); len(vms) != 1 || vms[0].GetName() != "beta" {
		t.Errorf("ListVMs after the removal: %v; want beta alone", vms)
	}

	// Back under the same name: its states come as any VM's.
	n.add(t, "alpha", "serve", supervise.Never)
	for stream.Receive() {
		m := stream.Msg()
		if m.GetGone() {
			t.Fatalf("gone again: %v", m)
		}
		if m.GetVm().GetName() == "alpha" && m.GetVm().GetState() == adminv1.VMState_VM_STATE_RUNNING {
			if m.GetVm().GetPid() == first.GetPid() || m.GetVm().GetLaunches() != 1 {
				t.Errorf("alpha back: %v; want a new process, its first launch", m.GetVm())
			}
			return
		}
	}
	t.Fatalf("alpha added again never ran: %v", stream.Err())
}
