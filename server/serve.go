package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/vmre/vmre/internal/h2c"
)

// ShutdownTimeout bounds the graceful part of Serve's shutdown.
const ShutdownTimeout = 2 * time.Second

// Serve serves h on l (HTTP/1.1 and h2c) until ctx is done, then shuts the
// server down: gracefully for up to ShutdownTimeout, then by closing every
// connection. It returns nil after a shutdown caused by ctx, or the error
// that stopped the server. It closes l.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := h2c.NewServer(h)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
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
