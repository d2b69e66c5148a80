package server_test

import (
	"errors"
	"net"
	"net/http"
	"os"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// lastRefusal fails unless err is permission_denied and the last call
// the hooks saw was refused with an OwnerError of reason.
func lastRefusal(t *testing.T, err error, seen *calls, reason string) {
	t.Helper()
	wantCode(t, err, connect.CodePermissionDenied)
	var oe *server.OwnerError
	list := seen.get()
	last := list[len(list)-1]
	if !errors.As(last.Err, &oe) || oe.Reason != reason || oe.Peer != last.Peer || oe.Addr != last.Addr {
		t.Fatalf("the hooks saw %+v (%v); want an OwnerError for %q with the call's peer and addr", last, last.Err, reason)
	}
}

// TestAddressesOfOthers: on every platform, a pending launch, or a remote
// VM's session, may not announce the engine's own address, one the host
// reserved, or the address of another VM that runs; such a refusal changes
// nothing, and an address is free again once its VM's launch ends.
func TestAddressesOfOthers(t *testing.T) {
	t.Parallel()
	var seen calls
	e, engineAddr := vmretest.StartEngine(t, server.Config{Hooks: &server.Hooks{Call: seen.add}}, nil)
	e.Reserve("0.0.0.0:9999", "127.0.0.1:9998")
	c := runtimeClient(t, engineAddr)
	ctx := t.Context()
	_, port, _ := net.SplitHostPort(engineAddr)

	l := vmretest.NewLaunch(t, e, 1, nil)
	for _, tc := range []struct{ addr, reason string }{
		{engineAddr, server.ReasonNodeAddr},
		{"localhost:" + port, server.ReasonNodeAddr},
		{"127.0.0.1:9999", server.ReasonNodeAddr}, // reserved on every address
		{"[::1]:9999", server.ReasonNodeAddr},
		{"127.0.0.1:9998", server.ReasonNodeAddr},
	} {
		_, err := callInitialize(ctx, c, l.Token(), 1, tc.addr)
		lastRefusal(t, err, &seen, tc.reason)
	}
	first := otherVMAddr()
	if _, err := callInitialize(ctx, c, l.Token(), 1, first); err != nil {
		t.Fatalf("the launch's own address: %v", err)
	}

	second := vmretest.NewLaunch(t, e, 1, nil)
	_, err := callInitialize(ctx, c, second.Token(), 1, first)
	lastRefusal(t, err, &seen, server.ReasonVMAddr)
	// A remote VM, whose caller the engine does not check (it runs on
	// another host), may not announce them either.
	token := server.NewToken()
	en, err := e.Enroll(server.EnrollConfig{Name: "far", Token: token, Initializer: server.AcceptVersions("", 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.Close)
	for _, tc := range []struct{ addr, reason string }{{engineAddr, server.ReasonNodeAddr}, {first, server.ReasonVMAddr}} {
		_, err := callInitialize(ctx, c, token, 1, tc.addr)
		lastRefusal(t, err, &seen, tc.reason)
	}

	l.End() // the first VM is gone: its address is free
	if _, err := callInitialize(ctx, c, second.Token(), 1, first); err != nil {
		t.Fatalf("the address of an ended launch: %v", err)
	}
}

// TestCallerCheckWaitsForTheProcess: an Initialize that comes before the
// host names the launched process waits for it, and is then checked: the
// test's own process holds the call's connection and listener, so naming
// it completes the launch.
func TestCallerCheckWaitsForTheProcess(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			h.ServeHTTP(w, r)
		})
	})
	l, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", 1), CheckCaller: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.End)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		_, err := callInitialize(t.Context(), runtimeClient(t, engineAddr), l.Token(), 1, ln.Addr().String())
		done <- err
	}()
	<-arrived // the call is in the engine: it waits, or it would be refused (pid 0 holds nothing)
	select {
	case err := <-done:
		t.Fatalf("Initialize returned before the process was named: %v", err)
	case <-l.Initialized():
		t.Fatal("the launch completed before the process was named")
	default:
	}
	l.SetProcess(os.Getpid())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
