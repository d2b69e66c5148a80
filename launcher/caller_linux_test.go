package launcher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/gen/vm/runtime/runtimepbconnect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

// Settings of the VMs of these tests.
const (
	victimKey   = "VMRE_TEST_VICTIM"   // thief: the pid whose token it steals
	announceKey = "VMRE_TEST_ANNOUNCE" // announce: the address it announces first
	waitUSR1Key = "VMRE_TEST_WAIT_USR1"
)

func init() {
	// waitusr1: says "notify=PID" on stdout, waits for SIGUSR1, then
	// serves /pid.
	vms["waitusr1"] = func([]string) int {
		waitUSR1()
		return serve(context.Background(), pidMux())
	}
	// thief: reads the token of the VM $VMRE_TEST_VICTIM from its
	// /proc/PID/environ, as a VM of the same user can, calls Initialize
	// with it announcing a listener of its own, says "theft=CODE" on
	// stdout, then makes its own handshake and serves /pid.
	vms["thief"] = func([]string) int {
		token, err := stealToken(os.Getenv(victimKey))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, err = client.Initialize(context.Background(), ln.Addr().String(),
			client.WithEngine(os.Getenv(vmre.EngineAddressKey), token))
		fmt.Printf("theft=%s\n", codeOf(err))
		return serve(context.Background(), pidMux())
	}
	// announce: calls Initialize with its own token announcing
	// $VMRE_TEST_ANNOUNCE, then makes its real handshake and serves /pid.
	vms["announce"] = func([]string) int {
		_, err := client.Initialize(context.Background(), os.Getenv(announceKey))
		fmt.Fprintf(os.Stderr, "announced %s: %v\n", os.Getenv(announceKey), err)
		return serve(context.Background(), pidMux())
	}
}

// waitUSR1 says "notify=PID" once SIGUSR1 is caught, and waits for it.
func waitUSR1() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fmt.Printf("notify=%d\n", os.Getpid())
	<-usr1
}

func pidMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/pid", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, os.Getpid()) })
	return mux
}

func stealToken(pid string) (string, error) {
	env, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		return "", err
	}
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if token, ok := strings.CutPrefix(string(kv), vmre.EngineTokenKey+"="); ok {
			return token, nil
		}
	}
	return "", fmt.Errorf("no %s in the environment of %s", vmre.EngineTokenKey, pid)
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// servedBy asks the VM's server which pid serves it.
func servedBy(t *testing.T, rt *launcher.Runtime) int {
	t.Helper()
	resp, err := rt.HTTPClient().Get("http://" + rt.Status().Addr + "/pid")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pid, _ := strconv.Atoi(string(b))
	return pid
}

// refusal waits for the refused Initialize of the launch of VM name and
// returns why the engine refused it.
func refusal(t *testing.T, events *vmretest.Events, name string) *server.OwnerError {
	t.Helper()
	ev := events.Wait(t, vmretest.EngineCall, func(e vmretest.Event) bool {
		i := e.Info.(launcher.EngineCallInfo)
		return i.VM == name && i.Call.Err != nil
	}).Info.(launcher.EngineCallInfo)
	var oe *server.OwnerError
	if ev.Call.Code() != connect.CodePermissionDenied || !errors.As(ev.Call.Err, &oe) {
		t.Fatalf("%s: the engine refused %s with %v; want permission_denied with an OwnerError", name, ev.Call.Addr, ev.Call.Err)
	}
	return oe
}

// TestStolenTokenIsRefused: a VM reads a sibling's token from
// /proc/PID/environ, as a process of the same user can, and calls
// Initialize with it before the sibling does. The engine refuses it, since
// its connection is not the sibling's; the sibling then completes its own
// handshake with its own address and serves.
func TestStolenTokenIsRefused(t *testing.T) {
	t.Parallel()
	out := &lineLog{}
	l, events := newLauncherWithEvents(t, launcher.Config{Stdout: out})
	type launched struct {
		rt  *launcher.Runtime
		err error
	}
	victim := make(chan launched, 1)
	go func() {
		rt, err := l.Launch(t.Context(), vmretest.Command("waitusr1"), launcher.WithName("victim"))
		victim <- launched{rt, err}
	}()
	victimPid, _ := strconv.Atoi(out.await(t, "notify="))

	cmd := vmretest.Command("thief")
	cmd.Env = append(cmd.Env, victimKey+"="+strconv.Itoa(victimPid))
	thief, err := l.Launch(t.Context(), cmd, launcher.WithName("thief"))
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Shutdown(context.Background())
	if got := out.await(t, "theft="); got != "permission_denied" {
		t.Errorf("the thief's Initialize with the victim's token: %s; want permission_denied", got)
	}
	if oe := refusal(t, events, "victim"); oe.Reason != server.ReasonCaller || oe.Pid != victimPid {
		t.Errorf("refused for %q (launched pid %d): %v; want %q for pid %d", oe.Reason, oe.Pid, oe, server.ReasonCaller, victimPid)
	}

	if err := syscall.Kill(victimPid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	v := <-victim
	if v.err != nil {
		t.Fatalf("the victim's own handshake: %v", v.err)
	}
	defer v.rt.Shutdown(context.Background())
	if v.rt.Status().Addr == thief.Status().Addr {
		t.Errorf("the victim's address is the thief's, %s", thief.Status().Addr)
	}
	if pid := servedBy(t, v.rt); pid != victimPid {
		t.Errorf("the victim's address is served by pid %d; want the victim, %d", pid, victimPid)
	}
	if pid := servedBy(t, thief); pid != thief.Status().Pid {
		t.Errorf("the thief's address is served by pid %d; want %d", pid, thief.Status().Pid)
	}
}

// TestAnnouncedAddressIsRefused: a VM that announces the address of the
// engine, of another VM, or of another listener of the host is refused,
// and says why; its own address is accepted after.
func TestAnnouncedAddressIsRefused(t *testing.T) {
	t.Parallel()
	l, events := newLauncherWithEvents(t, launcher.Config{})
	other := mustLaunch(t, l, "ok")
	defer other.Shutdown(context.Background())
	hostListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostListener.Close()
	_, enginePort, _ := net.SplitHostPort(l.EngineAddr())
	otherIP, otherPort, _ := net.SplitHostPort(other.Status().Addr)

	for _, tc := range []struct {
		name, addr, reason string
	}{
		{"the engine's address", l.EngineAddr(), server.ReasonNodeAddr},
		{"the engine's port as localhost", "localhost:" + enginePort, server.ReasonNodeAddr},
		{"another VM's address", other.Status().Addr, server.ReasonVMAddr},
		{"another VM's address, IPv4-mapped", "[::ffff:" + otherIP + "]:" + otherPort, server.ReasonVMAddr},
		{"a listener of the host's", hostListener.Addr().String(), server.ReasonListener},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := vmretest.Command("announce")
			cmd.Env = append(cmd.Env, announceKey+"="+tc.addr)
			name := "announce " + tc.name
			rt, err := l.Launch(t.Context(), cmd, launcher.WithName(name))
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Shutdown(context.Background())
			if oe := refusal(t, events, name); oe.Reason != tc.reason || oe.Addr != tc.addr {
				t.Errorf("refused %q for %q: %v; want %q", oe.Addr, oe.Reason, oe, tc.reason)
			}
			if pid := servedBy(t, rt); pid != rt.Status().Pid {
				t.Errorf("its address %s is served by pid %d; want the VM, %d", rt.Status().Addr, pid, rt.Status().Pid)
			}
		})
	}
}

// TestLegacyCallerIsChecked: the rpcchainvm handshake has no token, so
// any process that finds a launch's legacy listener may call it. The
// engine refuses a call that does not come from the launched VM's tree:
// here the test itself, which found the listener in the VM's environment.
func TestLegacyCallerIsChecked(t *testing.T) {
	t.Parallel()
	out := &lineLog{}
	l, events := newLauncherWithEvents(t, launcher.Config{Legacy: true, Stdout: out})
	type launched struct {
		rt  *launcher.Runtime
		err error
	}
	done := make(chan launched, 1)
	go func() {
		cmd := vmretest.Command("legacy")
		cmd.Env = append(cmd.Env, waitUSR1Key+"=1")
		rt, err := l.Launch(t.Context(), cmd, launcher.WithName("legacy"))
		done <- launched{rt, err}
	}()
	pid, _ := strconv.Atoi(out.await(t, "notify="))
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	var legacyAddr string
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if a, ok := strings.CutPrefix(string(kv), launcher.AvalancheEngineAddressKey+"="); ok {
			legacyAddr = a
		}
	}
	mine, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	c := runtimepbconnect.NewRuntimeClient(vmretest.H2CClient(t), "http://"+legacyAddr, connect.WithGRPC())
	_, err = c.Initialize(t.Context(), connect.NewRequest(&runtimepb.InitializeRequest{ProtocolVersion: 1, Addr: mine.Addr().String()}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an Initialize from outside the VM: %v; want permission_denied", err)
	}
	if oe := refusal(t, events, "legacy"); oe.Reason != server.ReasonCaller {
		t.Errorf("refused for %q: %v; want %q", oe.Reason, oe, server.ReasonCaller)
	}
	syscall.Kill(pid, syscall.SIGUSR1)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.rt.Shutdown(context.Background())
	if r.rt.Status().Addr == mine.Addr().String() {
		t.Error("the launch took the test's address")
	}
}
