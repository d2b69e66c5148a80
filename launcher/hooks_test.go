package launcher_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// hooksOnly is a Launcher embedded as a node would, with hooks and no log:
// everything the test learns, it learns from the events.
func hooksOnly(t *testing.T, cfg launcher.Config) (*launcher.Launcher, *vmretest.Events) {
	t.Helper()
	events := vmretest.NewEvents()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Hooks = events.Hooks()
	l, err := launcher.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, events
}

// isLease reports whether ev is the VM's Lease call, which comes at a time
// of the VM's choosing after its handshake.
func isLease(ev vmretest.Event) bool {
	c, ok := ev.Info.(launcher.EngineCallInfo)
	return ok && c.Procedure == runtimev1connect.RuntimeServiceLeaseProcedure
}

// kindsWithoutLease are the kinds of events, less the Lease calls.
func kindsWithoutLease(events []vmretest.Event) []string {
	var kinds []string
	for _, ev := range events {
		if !isLease(ev) {
			kinds = append(kinds, ev.Kind)
		}
	}
	return kinds
}

func TestHooksLaunchStopCycle(t *testing.T) {
	t.Parallel()
	l, events := hooksOnly(t, launcher.Config{})
	rt, err := l.Launch(t.Context(), vmretest.Command("ok"), launcher.WithName("cycle"))
	if err != nil {
		t.Fatal(err)
	}
	// The VM holds its lease on the pipe the launcher gave it, from its
	// start: there is no Lease call to wait for.
	rt.Stop(context.Background())
	<-rt.Done()

	list := events.List()
	wantKinds(t, kindsWithoutLease(list), vmretest.Started, vmretest.EngineCall, vmretest.Handshake,
		vmretest.Ready, vmretest.StopStage, vmretest.Exited)
	pid, addr := rt.Status().Pid, rt.Status().Addr
	for _, ev := range list {
		switch i := ev.Info.(type) {
		case launcher.StartedInfo:
			if i.VM != "cycle" || i.Pid != pid || i.Exec <= 0 {
				t.Errorf("Started %+v; want vm cycle, pid %d, an exec time", i, pid)
			}
		case launcher.EngineCallInfo:
			if i.VM != "cycle" || i.Pid != pid || !i.Accepted() || i.Protocol != connect.ProtocolConnect {
				t.Errorf("EngineCall %+v; want an accepted Connect call of pid %d", i, pid)
			}
			if !isLease(ev) && (i.Addr != addr || i.ProtocolVersion != vmre.ProtocolVersion) {
				t.Errorf("Initialize call %+v; want addr %s, version %d", i, addr, vmre.ProtocolVersion)
			}
		case launcher.HandshakeInfo:
			if i.Addr != addr || i.ProtocolVersion != vmre.ProtocolVersion || i.Elapsed != rt.HandshakeDuration() {
				t.Errorf("Handshake %+v; want addr %s and the runtime's handshake duration", i, addr)
			}
		case launcher.ReadyInfo:
			if i.Addr != addr || i.Elapsed < rt.HandshakeDuration() {
				t.Errorf("Ready %+v", i)
			}
		case launcher.StopStageInfo:
			if i.Stage != launcher.StageTerm || i.Reason != launcher.ReasonStop || i.Err != nil {
				t.Errorf("StopStage %+v; want SIGTERM for a Stop", i)
			}
		case launcher.ExitInfo:
			if exit, _ := rt.Exit(); i.Exit != exit || !exit.Success() || exit.Stage != launcher.StageTerm {
				t.Errorf("Exited %+v; want the runtime's exit, code 0 after SIGTERM", i)
			}
		default:
			t.Errorf("unexpected event %s %+v", ev.Kind, ev.Info)
		}
	}
	if slices.ContainsFunc(list, isLease) {
		t.Errorf("the VM called Lease: %v; a launched VM holds its lease on its pipe", events.Kinds())
	}
}

func TestHooksFailedExec(t *testing.T) {
	t.Parallel()
	l, events := hooksOnly(t, launcher.Config{})
	_, err := l.Launch(t.Context(), exec.Command("/nonexistent/vm"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseExec || lerr.Pid != 0 || lerr.Path != "/nonexistent/vm" {
		t.Fatalf("err = %#v; want a LaunchError of the exec phase, with no pid", err)
	}
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, vmre.ErrHandshakeFailed) || errors.Is(err, vmre.ErrProcessNotFound) {
		t.Errorf("errors.Is fails for %v", err)
	}
	wantKinds(t, events.Kinds(), vmretest.LaunchFailed)
	if got := events.List()[0].Info; got != lerr {
		t.Errorf("LaunchFailed got %v; want the error Launch returned", got)
	}
}

func TestHooksVersionMismatch(t *testing.T) {
	t.Parallel()
	l, events := hooksOnly(t, launcher.Config{})
	_, err := l.Launch(t.Context(), vmretest.Command("mismatch"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseVersion {
		t.Fatalf("err = %v; want a LaunchError of the version phase", err)
	}
	var mismatch *vmre.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.VMVersion != 2 || !errors.Is(err, vmre.ErrProtocolVersionMismatch) {
		t.Errorf("err = %v; want a *vmre.VersionMismatchError for version 2", err)
	}
	// The refused VM exits by itself, or is stopped: a SIGTERM shows only
	// when it came first.
	kinds := slices.DeleteFunc(events.Kinds(), func(k string) bool { return k == vmretest.StopStage })
	wantKinds(t, kinds, vmretest.Started, vmretest.EngineCall, vmretest.Exited, vmretest.LaunchFailed)
	call := events.List()[1].Info.(launcher.EngineCallInfo)
	if call.Accepted() || call.Code() != connect.CodeFailedPrecondition || !errors.As(call.Err, &mismatch) {
		t.Errorf("EngineCall %+v; want failed_precondition with the mismatch", call)
	}
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.StopStageInfo); ok && (i.Stage != launcher.StageTerm || i.Reason != launcher.ReasonHandshakeRefused) {
			t.Errorf("StopStage %+v; want SIGTERM for a refused handshake", i)
		}
	}
}

func TestHooksHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	l, events := hooksOnly(t, launcher.Config{HandshakeTimeout: timeout})
	_, err := l.Launch(t.Context(), vmretest.Command("never"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseHandshakeWait || lerr.Timeout != timeout || lerr.Exit != nil {
		t.Fatalf("err = %#v; want a LaunchError of the handshake wait, with the timeout", err)
	}
	if !errors.Is(err, vmre.ErrHandshakeTimeout) || !errors.Is(err, vmre.ErrProcessNotFound) {
		t.Errorf("errors.Is fails for %v", err)
	}
	wantKinds(t, events.Kinds(), vmretest.Started, vmretest.StopStage, vmretest.Exited, vmretest.LaunchFailed)
	if i := events.List()[1].Info.(launcher.StopStageInfo); i.Stage != launcher.StageKill || i.Reason != launcher.ReasonHandshakeAbandoned {
		t.Errorf("StopStage %+v; want SIGKILL for an abandoned handshake", i)
	}
}

func TestHooksStubbornVMKilledAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	l, events := hooksOnly(t, launcher.Config{GracefulTimeout: grace})
	rt, err := l.Launch(t.Context(), vmretest.Command("stubborn"))
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Shutdown(context.Background())
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseStop || lerr.Exit == nil || !lerr.Exit.Killed() || lerr.Timeout != grace {
		t.Fatalf("Shutdown = %#v; want a LaunchError of the stop phase, killed after %s", err, grace)
	}
	if errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Errorf("a stop error %v matches ErrHandshakeFailed", err)
	}
	wantKinds(t, events.Kinds(), vmretest.Started, vmretest.EngineCall, vmretest.Handshake, vmretest.Ready,
		vmretest.StopStage, vmretest.StopStage, vmretest.Exited)
	list := events.List()
	term, kill := list[4].Info.(launcher.StopStageInfo), list[5].Info.(launcher.StopStageInfo)
	if term.Stage != launcher.StageTerm || kill.Stage != launcher.StageKill || kill.Reason != launcher.ReasonGraceExpired {
		t.Errorf("stop stages %+v then %+v; want SIGTERM, then SIGKILL when the grace passed", term, kill)
	}
	if exit := list[6].Info.(launcher.ExitInfo).Exit; !exit.Killed() || exit.Stage != launcher.StageKill {
		t.Errorf("Exited %v; want killed by SIGKILL", exit)
	}
}

func TestWithHooksSeesOneLaunch(t *testing.T) {
	t.Parallel()
	l, all := hooksOnly(t, launcher.Config{})
	mine := vmretest.NewEvents()
	rt, err := l.Launch(t.Context(), vmretest.Command("quick"), launcher.WithHooks(mine.Hooks()))
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Launch(t.Context(), vmretest.Command("quick"))
	if err != nil {
		t.Fatal(err)
	}
	<-rt.Done()
	<-other.Done()
	for _, ev := range mine.List() {
		if i, ok := ev.Info.(launcher.StartedInfo); ok && i.Pid != rt.Status().Pid {
			t.Errorf("the launch's own hooks saw another VM's start: %+v", i)
		}
	}
	count := func(events *vmretest.Events) int {
		return len(slices.DeleteFunc(events.Kinds(), func(k string) bool { return k != vmretest.Started }))
	}
	if count(mine) != 1 || count(all) != 2 {
		t.Errorf("Started events: %d for the launch's hooks, %d for the Config's; want 1 and 2", count(mine), count(all))
	}
}

// TestWithReadyComesBeforeTheReadyHook: WithReady's function gets the
// launch's Runtime, handshake done, before any Ready hook is told: whoever
// learns of the VM from Ready finds it recorded.
func TestWithReadyComesBeforeTheReadyHook(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		recorded *launcher.Runtime
		order    []string
	)
	hooks := &launcher.Hooks{Ready: func(launcher.ReadyInfo) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, "Ready hook")
	}}
	l := newLauncher(t, launcher.Config{Hooks: hooks})
	ready := func(rt *launcher.Runtime) {
		mu.Lock()
		defer mu.Unlock()
		recorded = rt
		order = append(order, "WithReady")
	}
	rt, err := l.Launch(t.Context(), vmretest.Command("quick"), launcher.WithReady(ready))
	if err != nil {
		t.Fatal(err)
	}
	<-rt.Done()
	mu.Lock()
	defer mu.Unlock()
	if recorded != rt || !slices.Equal(order, []string{"WithReady", "Ready hook"}) {
		t.Errorf("WithReady got %p (the launch's Runtime is %p), order %v; want it first", recorded, rt, order)
	}
}

func TestHooksOutputTruncated(t *testing.T) {
	t.Parallel()
	l, events := hooksOnly(t, launcher.Config{})
	rt, err := l.Launch(t.Context(), vmretest.Command("bigline"))
	if err != nil {
		t.Fatal(err)
	}
	rt.Stop(context.Background())
	<-rt.Done()
	var truncated int
	for _, ev := range events.List() {
		if i, ok := ev.Info.(launcher.OutputDropInfo); ok {
			if i.Stream != "stdout" || i.Unread || i.Pid != rt.Status().Pid {
				t.Errorf("OutputDropped %+v; want a truncated stdout line", i)
			}
			truncated += i.Truncated
		}
	}
	if truncated != 1 {
		t.Errorf("%d truncated lines reported; the VM wrote one line longer than MaxLineBytes", truncated)
	}
}

func TestJoinHooks(t *testing.T) {
	t.Parallel()
	if launcher.JoinHooks(nil, nil) != nil {
		t.Error("JoinHooks of nothing is not nil")
	}
	one := &launcher.Hooks{}
	if launcher.JoinHooks(nil, one) != one {
		t.Error("JoinHooks of one does not return it")
	}
	var calls []string
	joined := launcher.JoinHooks(
		&launcher.Hooks{Started: func(launcher.StartedInfo) { calls = append(calls, "first") }},
		nil,
		&launcher.Hooks{Started: func(launcher.StartedInfo) { calls = append(calls, "second") }},
	)
	if joined.Exited != nil || joined.Ready != nil {
		t.Error("a field no hook sets is not nil")
	}
	joined.Started(launcher.StartedInfo{})
	if !slices.Equal(calls, []string{"first", "second"}) {
		t.Errorf("calls %v; want first, second", calls)
	}
}
