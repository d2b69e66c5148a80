package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/tlspin"
)

// ShutdownTimeout bounds the graceful part of Serve's shutdown.
const ShutdownTimeout = 2 * time.Second

// Serve serves h on l (HTTP/1.1 and h2c) until ctx is done, then shuts the
// server down: gracefully for up to ShutdownTimeout, then by closing every
// connection. It returns nil after a shutdown caused by ctx, or the error
// that stopped the server. It closes l.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := h2c.NewServer(h)
	return serve(ctx, srv, func() error { return srv.Serve(l) }, nil)
}

// TLS configures ServeTLS.
type TLS struct {
	// Certificate is the server's; a remote VM checks its fingerprint
	// (package tlspin).
	Certificate tls.Certificate
	// Pings are the HTTP/2 health checks that notice a cut link, and so
	// end the leases it carried (zero: a ping after 5 s of silence, and 5 s
	// for its answer).
	Pings Pings
}

// Pings are the HTTP/2 health checks of a connection that carries a lease:
// a connection silent for Interval gets a ping, and one whose ping is
// unanswered for Timeout is closed, which ends its streams. A cut link is
// so noticed within Interval + Timeout, where TCP alone would take many
// minutes. A zero Interval means the defaults.
type Pings struct {
	Interval, Timeout time.Duration
}

// ServeTLS serves h on l over TLS (HTTP/2 and HTTP/1.1) as Serve does,
// pinging idle HTTP/2 connections, and (on Linux) making TCP give up on
// data left unacknowledged for as long (TCP_USER_TIMEOUT), so that a lease
// over a link that was cut ends within the pings' time, on HTTP/1.1 too
// when the engine's keep-alives are as frequent as the pings
// (EnrollConfig.KeepAlive). It records how each connection ends, so that
// an Enrollment's session says whether its lease ended by a ping timeout,
// a link error or the VM's shutdown (EndCause). It is how a node's engine
// is reached by VMs on other hosts; plain-text handshakes stay on
// loopback. It closes l.
func ServeTLS(ctx context.Context, l net.Listener, h http.Handler, cfg TLS) error {
	srv := h2c.NewServer(h)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv.Protocols = &protocols
	srv.TLSConfig = tlscert.ServerConfig(cfg.Certificate)
	srv.HTTP2 = tlspin.Pings(cfg.Pings).HTTP2()
	srv.ErrorLog = log.New(io.Discard, "", 0) // refused TLS handshakes are the client's business
	tl := &trackedListener{Listener: l, pings: cfg.Pings}
	srv.ConnContext = connContext
	return serve(ctx, srv, func() error { return srv.ServeTLS(tl, "", "") }, func() { tl.closing.Store(true) })
}

// serve runs run, which serves srv, until ctx is done, then calls stopping
// (when set) and shuts srv down.
func serve(ctx context.Context, srv *http.Server, run func() error, stopping func()) error {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- run() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if stopping != nil {
		stopping()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
