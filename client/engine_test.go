package client_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/server"
)

// startEngine serves a new Engine on 127.0.0.1 (HTTP/1.1 and h2c), its
// handler wrapped by wrap when wrap is not nil, and returns it with its
// host:port. Cleanup closes the engine, then its server.
func startEngine(t *testing.T, wrap func(http.Handler) http.Handler) (*server.Engine, string) {
	t.Helper()
	e := server.New(server.Config{})
	h := e.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("engine's Serve returned %v; want nil", err)
		}
	})
	t.Cleanup(e.Close) // runs first: leases end before the server shuts down
	return e, ln.Addr().String()
}

// newLaunch registers a launch that accepts version; it ends with the test.
func newLaunch(t *testing.T, e *server.Engine, version uint) *server.Launch {
	t.Helper()
	l, err := e.NewLaunch(acceptVersion(version))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.End)
	return l
}

// leaseWatch tells when the engine has granted a lease: granted closes the
// first time the engine writes to a Lease response, which it does only
// after it has recorded the lease.
type leaseWatch struct {
	once    sync.Once
	granted chan struct{}
}

func newLeaseWatch() *leaseWatch { return &leaseWatch{granted: make(chan struct{})} }

func (lw *leaseWatch) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Lease") {
			w = &notifyWriter{ResponseWriter: w, notify: func() { lw.once.Do(func() { close(lw.granted) }) }}
		}
		h.ServeHTTP(w, r)
	})
}

// notifyWriter calls notify after each Write.
type notifyWriter struct {
	http.ResponseWriter
	notify func()
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.notify()
	return n, err
}

// Flush is needed by streaming handlers.
func (w *notifyWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *notifyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withoutLease answers Lease with 404, as an engine that predates the lease
// would; Connect clients read that as unimplemented.
func withoutLease(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Lease") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// waitFor fails the test unless ch closes within waitTimeout.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not happen within %v", what, waitTimeout)
	}
}
