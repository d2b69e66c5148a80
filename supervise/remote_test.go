package supervise_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vmre/vmre/supervise"
)

// TestRemoteVM: a remote VM's state follows its sessions; Stop refuses it,
// Start admits it again, Restart ends its session; nothing is launched.
func TestRemoteVM(t *testing.T) {
	t.Parallel()
	s, rec := newSupervisor(t, supervise.Backoff{})
	admitted, ended := true, 0
	spec := supervise.RemoteSpec{Name: "far", Admit: func(ok bool) { admitted = ok }, EndSession: func() { ended++ }}
	if err := s.AddRemote(spec); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRemote(spec); err == nil {
		t.Error("a second VM of the same name was added")
	}
	state := func() supervise.VM { vm, _ := s.Get("far"); return vm }
	if vm := state(); vm.State != supervise.StateWaiting || !vm.Remote || vm.Pid != 0 {
		t.Fatalf("before it calls: %+v", vm)
	}
	s.RemoteUp("far", supervise.Session{Peer: "10.0.0.2:5000", Addr: "10.0.0.2:9650", CertSHA256: "ab", ProtocolVersion: 1})
	if vm := state(); vm.State != supervise.StateRunning || vm.Peer != "10.0.0.2:5000" || vm.Addr != "10.0.0.2:9650" || vm.Launches != 1 {
		t.Fatalf("connected: %+v", vm)
	}
	lost := errors.New("the lease broke: connection reset")
	s.RemoteDown("far", lost)
	if vm := state(); vm.State != supervise.StateLost || !errors.Is(vm.Err, lost) {
		t.Fatalf("after its lease broke: %+v", vm)
	}
	s.RemoteUp("far", supervise.Session{Peer: "10.0.0.2:5001", Addr: "10.0.0.2:9650", ProtocolVersion: 1})
	if vm := state(); vm.State != supervise.StateRunning || vm.Restarts != 1 || vm.Launches != 2 {
		t.Fatalf("back: %+v", vm)
	}
	ctx := context.Background()
	if err := s.Restart(ctx, "far"); err != nil || ended != 1 {
		t.Fatalf("Restart: %v, sessions ended %d", err, ended)
	}
	if changed, err := s.Stop(ctx, "far"); err != nil || !changed || admitted || state().State != supervise.StateStopped {
		t.Fatalf("Stop: %v, changed %v, admitted %v, %v", err, changed, admitted, state().State)
	}
	s.RemoteDown("far", lost)
	if vm := state(); vm.State != supervise.StateStopped {
		t.Fatalf("a stopped VM's end made it %v", vm.State)
	}
	if changed, _ := s.Stop(ctx, "far"); changed {
		t.Error("a second Stop changed something")
	}
	if changed, err := s.Start(ctx, "far"); err != nil || !changed || !admitted || state().State != supervise.StateWaiting {
		t.Fatalf("Start: %v, changed %v, admitted %v, %v", err, changed, admitted, state().State)
	}
	var states []string
	for _, vm := range rec.all() {
		states = append(states, vm.State.String())
	}
	want := []string{"running", "lost", "running", "stopped", "stopped", "waiting"}
	if len(states) != len(want) {
		t.Fatalf("changes %v; want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("changes %v; want %v", states, want)
		}
	}
	s.Close(ctx) // returns: a remote VM has no goroutine to wait for
}

// TestRemoteUpAfterStop: a session whose lease began just before an
// operator's Stop, and is told of just after it, leaves the VM stopped, so
// that Start admits it again.
func TestRemoteUpAfterStop(t *testing.T) {
	t.Parallel()
	s, _ := newSupervisor(t, supervise.Backoff{})
	admitted := true
	spec := supervise.RemoteSpec{Name: "far", Admit: func(ok bool) { admitted = ok }, EndSession: func() {}}
	if err := s.AddRemote(spec); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if changed, err := s.Stop(ctx, "far"); err != nil || !changed || admitted {
		t.Fatalf("Stop: %v, changed %v, admitted %v", err, changed, admitted)
	}
	s.RemoteUp("far", supervise.Session{Peer: "10.0.0.2:5000", Addr: "10.0.0.2:9650", ProtocolVersion: 1})
	s.RemoteDown("far", errors.New("the session ended: the VM was stopped"))
	if vm, _ := s.Get("far"); vm.State != supervise.StateStopped || vm.Launches != 0 {
		t.Fatalf("a session told of after Stop: %v, %d launches; want stopped, none", vm.State, vm.Launches)
	}
	if changed, err := s.Start(ctx, "far"); err != nil || !changed || !admitted {
		t.Fatalf("Start: %v, changed %v, admitted %v; want it admitted again", err, changed, admitted)
	}
}
