package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// calls records the calls a hook is told of.
type calls struct {
	mu   sync.Mutex
	list []server.Call
}

func (c *calls) add(call server.Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, call)
}

func (c *calls) get() []server.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

// TestHooksSeeEveryCall: the engine's hook sees every call, refused ones
// included and far more than the log's limit of refusals; a launch's own
// hook sees the calls made with its token, and no other.
func TestHooksSeeEveryCall(t *testing.T) {
	t.Parallel()
	var engineCalls, launchCalls calls
	e, addr := vmretest.StartEngine(t, server.Config{Hooks: &server.Hooks{Call: engineCalls.add}}, nil)
	l := vmretest.NewLaunch(t, e, 1, launchCalls.add)
	vmretest.NewLaunch(t, e, 1, func(c server.Call) { t.Errorf("another launch's hook saw %+v", c) })
	c := runtimeClient(t, addr)

	const wrong = 50 // in well under a second: the log keeps 10 of them
	for range wrong {
		_, err := callInitialize(t.Context(), c, "0000", 1, vmAddr)
		wantCode(t, err, connect.CodeUnauthenticated)
	}
	_, err := callInitialize(t.Context(), c, l.Token(), 2, vmAddr)
	wantCode(t, err, connect.CodeFailedPrecondition)
	if _, err := callInitialize(t.Context(), c, l.Token(), 1, vmAddr); err != nil {
		t.Fatal(err)
	}

	got := engineCalls.get()
	if len(got) != wrong+2 {
		t.Fatalf("the engine's hook saw %d calls; want %d", len(got), wrong+2)
	}
	for _, call := range got[:wrong] {
		if call.Accepted() || call.Code() != connect.CodeUnauthenticated || call.Result() != "unauthenticated" ||
			call.Procedure != runtimev1connect.RuntimeServiceInitializeProcedure || call.Protocol != connect.ProtocolConnect || call.Peer == "" {
			t.Fatalf("refused call %+v", call)
		}
	}
	mine := launchCalls.get()
	if len(mine) != 2 || !slices.Equal(mine, got[wrong:]) {
		t.Fatalf("the launch's hook saw %+v; want its two calls %+v", mine, got[wrong:])
	}
	var mismatch *vmre.VersionMismatchError
	if refused := mine[0]; refused.Code() != connect.CodeFailedPrecondition || !errors.As(refused.Err, &mismatch) ||
		refused.ProtocolVersion != 2 || refused.Addr != vmAddr {
		t.Errorf("refused call %+v; want failed_precondition with the mismatch", refused)
	}
	if ok := mine[1]; !ok.Accepted() || ok.Result() != "ok" || ok.Code() != 0 || ok.ProtocolVersion != 1 || ok.Elapsed <= 0 {
		t.Errorf("accepted call %+v", ok)
	}
}

// TestLegacyHooks: a legacy listener tells its hook of each call.
func TestLegacyHooks(t *testing.T) {
	t.Parallel()
	var seen calls
	l := listenLegacy(t, 1, server.LegacyConfig{Hooks: &server.Hooks{Call: seen.add}})
	conn := grpcConn(t, l.Addr())
	if err := legacyInitialize(t, conn, 3, vmAddr); err == nil {
		t.Fatal("version 3 accepted")
	}
	if err := legacyInitialize(t, conn, 1, vmAddr); err != nil {
		t.Fatal(err)
	}
	got := seen.get()
	if len(got) != 2 || got[0].Code() != connect.CodeFailedPrecondition || !got[1].Accepted() ||
		got[1].Procedure != legacyMethod || got[1].Protocol != connect.ProtocolGRPC {
		t.Fatalf("legacy calls %+v; want a refusal, then the accepted gRPC call", got)
	}
}

// idleTimeoutClient is an HTTP/1.1 client that gives up on a connection
// that stays silent for idle, as Node's fetch does after 300 s
// (UND_ERR_BODY_TIMEOUT): every read must return within idle.
func idleTimeoutClient(t *testing.T, idle time.Duration) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	c := &http.Client{Transport: &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			return idleConn{conn, idle}, err
		},
	}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

// TestLeaseKeepAlive: a lease held by a client with a short idle timeout
// lives on, because the engine sends a message at every keep-alive
// interval; without them, the same client ends the quiet lease.
func TestLeaseKeepAlive(t *testing.T) {
	t.Parallel()
	// The keep-alive interval is a twentieth of the idle timeout: a margin
	// that a loaded machine's pauses do not eat.
	const idle = 2 * time.Second
	for _, tc := range []struct {
		name      string
		keepAlive time.Duration
		survives  bool
	}{
		{"keep-alive under the idle timeout", idle / 20, true},
		{"no keep-alive within the idle timeout", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, addr := vmretest.StartEngine(t, server.Config{LeaseKeepAlive: tc.keepAlive}, nil)
			l := vmretest.NewLaunch(t, e, 1, nil)
			c := runtimev1connect.NewRuntimeServiceClient(idleTimeoutClient(t, idle), "http://"+addr)
			if _, err := callInitialize(t.Context(), c, l.Token(), 1, vmAddr); err != nil {
				t.Fatal(err)
			}
			ls, err := openLease(t, t.Context(), c, l.Token())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.survives {
				vmretest.WaitClosed(t, ls.done, "the quiet lease's end at the client's idle timeout")
				if ls.err == nil || connect.CodeOf(ls.err) == connect.CodeNotFound {
					t.Fatalf("the quiet lease ended with %v; want the client's timeout", ls.err)
				}
				return
			}
			// Live through two idle timeouts' worth of keep-alives.
			for i := range 40 {
				select {
				case <-ls.each:
				case <-ls.done:
					t.Fatalf("the lease ended after %d messages (%v) although the engine kept it alive", i, ls.err)
				case <-time.After(vmretest.WaitTimeout):
					t.Fatalf("only %d messages within %s", i, vmretest.WaitTimeout)
				}
			}
			l.End()
			vmretest.WaitClosed(t, ls.done, "the lease's end")
			if ls.err != nil {
				t.Errorf("lease ended with %v after End; want a clean end", ls.err)
			}
		})
	}
}
