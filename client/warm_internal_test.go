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
// reads from connections in memory and that the warm-up's health service
// answers with SERVING; the VM's handler sees none of them. The same
// requests over TCP, WarmUpHeader included, are the VM's handler's: the
// header alone is no way around it.
func TestWarmUpRequests(t *testing.T) {
	t.Parallel()
	var seen atomic.Int32
	w := newWarmUp(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { seen.Add(1) }))
	defer w.stop()
	srv := h2c.NewServer(w)
	defer srv.Close()
	if err := w.run(t.Context(), srv); err != nil {
		t.Fatalf("the warm-up: %v", err)
	}
	if n := seen.Load(); n != 0 {
		t.Errorf("the VM's handler saw %d of the warm-up's requests; want none", n)
	}

	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	for name, call := range map[string]func(net.Conn) error{"gRPC over h2c": grpcH2C, "Connect over HTTP/1.1": connectHTTP1} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := call(conn); err != nil {
			t.Errorf("%s over TCP: %v; want the VM's handler's answer", name, err)
		}
		conn.Close()
	}
	if n := seen.Load(); n != 2 {
		t.Errorf("the VM's handler saw %d of the requests over TCP; want 2", n)
	}
}
