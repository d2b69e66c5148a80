package vmretest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/tlspin"
)

// StartEngine serves a new Engine on 127.0.0.1 (HTTP/1.1 and h2c), its
// handler wrapped by wrap when wrap is not nil, and returns it with its
// host:port. Cleanup closes the engine, which ends its leases, then shuts
// the server down.
func StartEngine(t testing.TB, cfg server.Config, wrap func(http.Handler) http.Handler) (*server.Engine, string) {
	t.Helper()
	e := server.New(cfg)
	h := e.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	addr := Serve(t, h)
	t.Cleanup(e.Close) // runs before Serve's cleanup: leases end first
	return e, addr
}

// Serve serves h with server.Serve on a fresh loopback listener until the
// test ends, and checks that Serve then returns nil.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve returned %v after its context ended; want nil", err)
		}
	})
	return ln.Addr().String()
}

// NewLaunch registers a launch that accepts version, telling onCall (which
// may be nil) of its calls; it ends with the test.
func NewLaunch(t testing.TB, e *server.Engine, version uint, onCall func(server.Call)) *server.Launch {
	t.Helper()
	l, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", version), OnCall: onCall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.End)
	return l
}

// H2CClient returns an HTTP client that speaks HTTP/2 without TLS, whose
// idle connections close when the test ends.
func H2CClient(t testing.TB) *http.Client {
	c := h2c.NewClient()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// HTTP1Client returns an HTTP client that speaks HTTP/1.1 only, whose idle
// connections close when the test ends.
func HTTP1Client(t testing.TB) *http.Client {
	c := h2c.NewHTTP1Client()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// ServeOn serves h on ln until the test ends: over HTTP/1.1 and h2c, or,
// with http1Only, over HTTP/1.1 alone, as a VM built on a plain HTTP
// server does. Cleanup closes the server and checks how Serve ended.
func ServeOn(t testing.TB, ln net.Listener, h http.Handler, http1Only bool) {
	t.Helper()
	srv := h2c.NewServer(h)
	if http1Only {
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		srv.Protocols = &protocols
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
}

// PinnedClient returns an HTTP client that trusts exactly the TLS
// certificate of fingerprint certSHA256 (package tlspin), whose idle
// connections close when the test ends.
func PinnedClient(t testing.TB, certSHA256 string) *http.Client {
	t.Helper()
	c, err := tlspin.NewClient(certSHA256, tlspin.Pings{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}
