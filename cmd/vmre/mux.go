package main

import (
	"context"
	"net"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/vmre/vmre/server"
)

// muxRoutes are what the node mux serves besides the engine.
type muxRoutes struct {
	vms     http.Handler // GET /v1/vms
	metrics http.Handler // GET /metrics
	admin   func(r chi.Router)
}

// newNodeMux returns the node's HTTP mux: GET /healthz, GET /v1/vms,
// GET /metrics, the admin service, and the engine at "/"
// (RuntimeService, grpc.health.v1 and server reflection on their gRPC
// paths).
func newNodeMux(engine *server.Engine, routes muxRoutes) http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	if routes.vms != nil {
		r.Method(http.MethodGet, "/v1/vms", routes.vms)
	}
	if routes.metrics != nil {
		r.Method(http.MethodGet, "/metrics", routes.metrics)
	}
	if routes.admin != nil {
		routes.admin(r)
	}
	r.Mount("/", engine.Handler())
	return r
}

// node serves the node mux on a listener until closed.
type node struct {
	engine *server.Engine
	addr   string // where a VM on this machine reaches the mux
	cancel context.CancelFunc
	done   chan struct{} // closed when serving has stopped
	err    error         // why serving stopped; read after done
}

// startNode serves engine and the node mux on ln, HTTP/1.1 and h2c.
func startNode(ln net.Listener, addr string, engine *server.Engine, routes muxRoutes) *node {
	n := &node{engine: engine, addr: addr, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	h := newNodeMux(engine, routes)
	go func() {
		defer close(n.done)
		n.err = server.Serve(ctx, ln, h)
	}()
	return n
}

// Done is closed when the mux has stopped serving, by close or a failure.
func (n *node) Done() <-chan struct{} { return n.done }

// close ends the engine's leases, shuts the mux down and waits for it.
func (n *node) close() error {
	n.engine.Close()
	n.cancel()
	<-n.done
	return n.err
}
