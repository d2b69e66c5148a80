package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vmre/vmre/client"
)

// serveWithoutHandshake does what client.Serve does minus the handshake:
// it listens on loopback and serves h, but never calls the host back, so
// the host's launch ends in a handshake timeout. It serves until ctx ends.
func serveWithoutHandshake(ctx context.Context, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the VM's server: %w", err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	log.LogAttrs(ctx, slog.LevelWarn, "not calling the host back (--no-handshake): the host will time out waiting for the handshake",
		slog.String("addr", ln.Addr().String()))
	select {
	case <-ctx.Done():
		log.LogAttrs(ctx, slog.LevelInfo, "shutting down", slog.String("reason", context.Cause(ctx).Error()))
	case err := <-serveErr:
		return fmt.Errorf("VM server stopped: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), client.DefaultShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("VM server stopped: %w", err)
	}
	return nil
}
