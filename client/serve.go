package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/internal/h2c"
)

// Serve runs the VM side of a launch: it listens on 127.0.0.1:0, serves h
// there over HTTP/1.1 and h2c, completes the handshake with the host's
// engine, holds the lease, and serves until SIGTERM, SIGINT, the end of ctx
// or the end of the lease (the host stopped the VM, or died). It then shuts
// the server down gracefully and returns nil.
//
// It returns ErrNotPlugin when the host's environment variables are
// missing, and an error wrapping vmre.ErrHandshakeFailed when the engine
// refuses the handshake.
func Serve(ctx context.Context, h http.Handler, opts ...Option) error {
	o := newOptions(opts)
	ec, err := newEngineClient(o)
	if err != nil {
		if o.listener != nil {
			o.listener.Close()
		}
		return err
	}
	defer ec.close()

	// Signals are caught from the start, but they do not cut the handshake
	// short: the host may stop the VM the moment the engine has accepted the
	// handshake, before its answer reached the VM. A stop is then a clean
	// shutdown right after the handshake.
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()

	ln := o.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("listen for the VM's server: %w", err)
		}
	}
	// Serve before the handshake: the host may call the VM the moment the
	// handshake returns, and connections made earlier wait in the backlog.
	srv := h2c.NewServer(h)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	host, err := ec.initialize(ctx, ln.Addr().String())
	ctx = sigCtx
	if err != nil {
		srv.Close()
		<-serveErr
		return err
	}
	o.logger.LogAttrs(ctx, slog.LevelInfo, "handshake succeeded", slog.String("addr", ln.Addr().String()),
		slog.String("host", host.Name), slog.Uint64("protocol_version", uint64(host.ProtocolVersion)))

	leaseCtx, cancelLease := context.WithCancel(ctx)
	defer cancelLease()
	leaseEnd := make(chan error, 1)
	if o.lease {
		go func() { leaseEnd <- ec.lease(leaseCtx) }()
	} else {
		leaseEnd = nil // a nil channel never delivers
	}

	var result error
	for running := true; running; {
		select {
		case <-ctx.Done():
			o.logger.LogAttrs(ctx, slog.LevelInfo, "shutting down", slog.String("reason", context.Cause(ctx).Error()))
			running = false
		case err := <-leaseEnd:
			leaseEnd = nil
			switch {
			case err == nil:
				o.logger.Info("shutting down", "reason", "the host ended the lease")
				running = false
			case connect.CodeOf(err) == connect.CodeUnimplemented:
				o.logger.Warn("the host does not offer a lease; serving until stopped by a signal")
			default:
				o.logger.Warn("shutting down", "reason", "lost the lease to the host", "error", err)
				running = false
			}
		case err := <-serveErr:
			serveErr = nil
			result = fmt.Errorf("VM server stopped: %w", err)
			running = false
		}
	}
	cancelLease()
	if leaseEnd != nil {
		<-leaseEnd
	}
	if serveErr != nil {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			o.logger.Warn("graceful shutdown cut short", "error", err)
			srv.Close()
		}
		if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
			result = fmt.Errorf("VM server stopped: %w", err)
		}
	}
	return result
}
