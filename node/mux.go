package node

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/internal/bearer"
)

// newMux is the node's HTTP handler: GET /healthz, GET /v1/vms, GET
// /metrics, the admin service and the engine's paths.
func (n *Node) newMux() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	r.Get("/v1/vms", n.serveVMs)
	metricsHandler := n.metrics.Handler()
	if g, ok := n.cfg.Registerer.(prometheus.Gatherer); ok {
		// The embedder's registry: its metrics and the node's, together.
		metricsHandler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	}
	if n.cfg.MetricsToken {
		metricsHandler = requireToken(n.cfg.AdminToken, metricsHandler)
	}
	r.Method(http.MethodGet, "/metrics", metricsHandler)
	adminPath, adminHandler := n.admin.Handler()
	r.Handle(adminPath+"*", adminHandler)
	engine := n.engine.Handler()
	for _, p := range n.engine.Paths() {
		r.Handle(p+"*", engine)
	}
	return r
}

// serveVMs serves GET /v1/vms: the VMs as the admin service's ListVMs
// answers, in the JSON of vmre ps --json.
func (n *Node) serveVMs(w http.ResponseWriter, _ *http.Request) {
	b, err := admin.JSON(n.admin.List())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// requireToken guards h with the admin token (MetricsToken).
func requireToken(token string, h http.Handler) http.Handler {
	key := bearer.KeyOf(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !key.Matches(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized: send Authorization: Bearer with the node's admin token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
