package client

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/vmre/vmre/internal/h2c"
)

// TestWarmUpRequests: the warm-up's hand-written requests, gRPC over h2c
// and Connect over HTTP/1.1, are whole requests that net/http's server
// reads and that the warm-up's health service answers with SERVING; the
// VM's handler sees none of them, and sees a request that carries a wrong
// secret.
func TestWarmUpRequests(t *testing.T) {
	t.Parallel()
	var seen atomic.Int32
	w := newWarmUp(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { seen.Add(1) }))
	defer w.stop()
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := h2c.NewServer(w)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	for name, call := range map[string]func(net.Conn) error{"gRPC over h2c": w.grpcH2C, "Connect over HTTP/1.1": w.connectHTTP1} {
		if err := w.call(t.Context(), ln.Addr().String(), call); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := seen.Load(); n != 0 {
		t.Errorf("the VM's handler saw %d of the warm-up's requests; want none", n)
	}
	other := newWarmUp(nil) // another Serve's warm-up, with another secret
	defer other.stop()
	if err := other.call(t.Context(), ln.Addr().String(), other.connectHTTP1); err != nil {
		t.Errorf("Connect over HTTP/1.1 with a wrong secret: %v; want the VM's handler's answer", err)
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("the VM's handler saw %d requests with a wrong secret; want 1", n)
	}
}
