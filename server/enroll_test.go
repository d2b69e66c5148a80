package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/tlspin"
)

// sessions records an enrollment's session events.
type sessions struct {
	mu     sync.Mutex
	list   []server.SessionEvent
	change chan struct{}
}

func newSessions() *sessions { return &sessions{change: make(chan struct{}, 16)} }

func (s *sessions) add(ev server.SessionEvent) {
	s.mu.Lock()
	s.list = append(s.list, ev)
	s.mu.Unlock()
	s.change <- struct{}{}
}

// next waits for the next event.
func (s *sessions) next(t *testing.T) server.SessionEvent {
	t.Helper()
	vmretest.WaitClosed(t, s.change, "a session event")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list[len(s.list)-1]
}

// TestEnrollmentSessions: a remote VM handshakes again and again under one
// token, one session at a time; the node can end a session, refuse the VM,
// and rotate its token.
func TestEnrollmentSessions(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	evs := newSessions()
	token := server.NewToken()
	en, err := e.Enroll(server.EnrollConfig{Name: "far", Token: token, Initializer: server.AcceptVersions("", 1), OnSession: evs.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.Close)
	c := runtimeClient(t, addr)
	const remoteAddr = "10.1.2.3:9650" // a remote VM announces an address beyond loopback
	sum := strings.Repeat("ab", 32)

	// A session: handshake, lease.
	if _, err := callInitializeTLS(t, c, token, remoteAddr, sum); err != nil {
		t.Fatal(err)
	}
	first, err := openLease(t, t.Context(), c, token)
	if err != nil {
		t.Fatal(err)
	}
	up := evs.next(t)
	if !up.Up || up.Addr != remoteAddr || up.CertSHA256 != sum || up.Peer == "" || up.ProtocolVersion != 1 {
		t.Fatalf("session event %+v", up)
	}
	// A second VM with the same token, while the first holds its lease.
	_, err = callInitializeTLS(t, c, token, remoteAddr, "")
	wantCode(t, err, connect.CodeAlreadyExists)

	// The node ends the session: the lease ends cleanly, and the VM may
	// handshake again.
	en.EndSession()
	vmretest.WaitClosed(t, first.done, "the lease's end")
	if down := evs.next(t); down.Up || !errors.Is(down.Err, server.ErrSessionEnded) {
		t.Fatalf("session end %+v; want ErrSessionEnded", down)
	}
	if _, err := callInitializeTLS(t, c, token, remoteAddr, ""); err != nil {
		t.Fatalf("a new session after the end: %v", err)
	}
	if _, err := openLease(t, t.Context(), c, token); err != nil {
		t.Fatal(err)
	}
	evs.next(t)

	// Refused: its session ends, its handshakes are refused.
	en.Admit(false)
	evs.next(t)
	_, err = callInitializeTLS(t, c, token, remoteAddr, "")
	wantCode(t, err, connect.CodeFailedPrecondition)
	en.Admit(true)

	// Rotated: the old token is refused at once.
	newToken := server.NewToken()
	if err := en.Rotate(newToken); err != nil {
		t.Fatal(err)
	}
	_, err = callInitializeTLS(t, c, token, remoteAddr, "")
	wantCode(t, err, connect.CodeUnauthenticated)
	if _, err := callInitializeTLS(t, c, newToken, remoteAddr, ""); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	// A fingerprint that is not one is refused.
	_, err = callInitializeTLS(t, c, newToken, remoteAddr, "not-hex")
	wantCode(t, err, connect.CodeInvalidArgument)
	if _, err := e.Enroll(server.EnrollConfig{Name: "short", Token: "short", Initializer: server.AcceptVersions("", 1)}); err == nil {
		t.Error("an enrollment with a short token was accepted")
	}
}

// TestServeTLS: the engine over TLS answers a client that pins its
// certificate, refuses one that pins another, and answers plain HTTP on
// its port with 400.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	cert, err := tlscert.SelfSigned([]string{"127.0.0.1"}, 3600e9)
	if err != nil {
		t.Fatal(err)
	}
	e := server.New(server.Config{})
	t.Cleanup(e.Close)
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.ServeTLS(ctx, ln, e.Handler(), server.TLS{Certificate: cert}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	addr := ln.Addr().String()
	token := server.NewToken()
	en, err := e.Enroll(server.EnrollConfig{Name: "far", Token: token, Initializer: server.AcceptVersions("", 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.Close)

	pinned := vmretest.PinnedClient(t, tlspin.Fingerprint(cert.Certificate[0]))
	c := runtimev1connect.NewRuntimeServiceClient(pinned, "https://"+addr, connect.WithGRPC())
	if _, err := callInitializeTLS(t, c, token, "10.1.2.3:9650", ""); err != nil {
		t.Fatalf("gRPC over TLS with the right pin: %v", err)
	}
	other, _ := tlscert.SelfSigned(nil, 3600e9)
	wrong := vmretest.PinnedClient(t, tlspin.Fingerprint(other.Certificate[0]))
	_, err = callInitializeTLS(t, runtimev1connect.NewRuntimeServiceClient(wrong, "https://"+addr), token, "10.1.2.3:9650", "")
	var mismatch *tlspin.MismatchError
	if !errors.As(err, &mismatch) {
		t.Errorf("a wrong pin: %v; want a MismatchError", err)
	}
	plain := vmretest.HTTP1Client(t)
	res, err := plain.Post("http://"+addr+runtimev1connect.RuntimeServiceInitializeProcedure, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP on the TLS port: %s; want 400", res.Status)
	}
}
