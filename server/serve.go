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
	"github.com/vmre/vmre/internal/tlspin"
)

// ShutdownTimeout bounds the graceful part of Serve's shutdown.
const ShutdownTimeout = 2 * time.Second

// Serve serves h on l (HTTP/1.1 and h2c) until ctx is done, then shuts the
// server down: gracefully for up to ShutdownTimeout, then by closing every
// connection. It returns nil after a shutdown caused by ctx, or the error
// that stopped the server. It closes l.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := h2c.NewServer(h)
	return serve(ctx, srv, func() error { return srv.Serve(l) })
}

// TLS configures ServeTLS.
type TLS struct {
	// Certificate is the server's; a remote VM checks its fingerprint
	// (internal/tlspin).
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
// pinging idle HTTP/2 connections so that a lease over a link that was cut
// ends within the pings' time. It is how a node's engine is reached by VMs
// on other hosts; plain-text handshakes stay on loopback. It closes l.
func ServeTLS(ctx context.Context, l net.Listener, h http.Handler, cfg TLS) error {
	srv := h2c.NewServer(h)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv.Protocols = &protocols
	srv.TLSConfig = tlspin.ServerConfig(cfg.Certificate)
	srv.HTTP2 = tlspin.Pings(cfg.Pings).HTTP2()
	srv.ErrorLog = log.New(io.Discard, "", 0) // refused TLS handshakes are the client's business
	return serve(ctx, srv, func() error { return srv.ServeTLS(l, "", "") })
}

// serve runs run, which serves srv, until ctx is done, then shuts srv down.
func serve(ctx context.Context, srv *http.Server, run func() error) error {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- run() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
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
