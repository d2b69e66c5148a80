package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/tlscert"
)

// Serve runs the VM side of a launch: it listens on 127.0.0.1:0, serves h
// there over HTTP/1.1 and h2c, completes the handshake with the host's
// engine, holds the lease, and serves until SIGTERM, SIGINT, the end of ctx
// or the end of the lease (the host stopped the VM, or died). It then shuts
// the server down gracefully and returns nil.
//
// When the host has died (the lease broke, or the VM was handed to another
// parent) and the VM leads its process group, as launched VMs do, Serve
// kills that group after the graceful shutdown, itself included, so that no
// child of the VM outlives the host.
//
// While it waits for the engine's answer, Serve calls its own server the
// ways a host will (gRPC over h2c, Connect over HTTP/1.1), so that the
// host's first call runs no code for the first time; Serve answers those
// requests itself, and h never sees them (WithoutWarmUp).
//
// Once the host has ended the VM's lease, SIGTERM stays caught until the
// process exits: the host's SIGTERM may arrive after Serve has returned,
// and must not kill the VM in the middle of its exit.
//
// It returns ErrNotPlugin when the host's environment variables are
// missing, and an error wrapping vmre.ErrHandshakeFailed when the engine
// refuses the handshake.
func Serve(ctx context.Context, h http.Handler, opts ...Option) error {
	o := newOptions(opts)
	hostPid := os.Getppid()
	ec, err := newEngineClient(o)
	if err != nil {
		if o.listener != nil {
			o.listener.Close()
		}
		return err
	}
	defer ec.close()
	// A VM that its host launched holds its lease on a pipe; one reached
	// over the network, through the engine.
	pipe := leasePipe(o.getenv)

	// Signals are caught from the start, but they do not cut the handshake
	// short: the host may stop the VM the moment the engine has accepted the
	// handshake, before its answer reached the VM. A stop is then a clean
	// shutdown right after the handshake.
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	// When the host dies, the VM's stdout and stderr are pipes to nobody. A
	// Go program dies of SIGPIPE on its next log line then, before it could
	// shut down or end its children; caught, the write just fails.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)

	// A remote VM (docs/REMOTE.md) listens where its orchestrator says,
	// serves TLS with a certificate of its own, and outlives no host of
	// its own: its orchestrator owns its processes.
	remote := o.engineCert != ""
	ln := o.listener
	if ln == nil {
		if ln, err = listenVM(ctx, o); err != nil {
			if pipe != nil {
				pipe.Close()
			}
			return err
		}
	}
	announce, err := announcedAddr(o, ln)
	if err != nil {
		if pipe != nil {
			pipe.Close()
		}
		ln.Close()
		return err
	}
	// Serve before the handshake: the host may call the VM the moment the
	// handshake returns, and connections made earlier wait in the backlog.
	if remote {
		h = healthGET(h) // for a Kubernetes probe
	}
	warm := newWarmUp(h)
	srv := h2c.NewServer(warm)
	tracked := newConns()
	srv.ConnState = tracked.track
	serve := func() error { return srv.Serve(ln) }
	var certDER []byte
	if remote && o.getenv(PlaintextKey) != "1" {
		cert, err := tlscert.SelfSigned([]string{hostOf(announce)}, 365*24*time.Hour)
		if err != nil {
			ln.Close()
			return fmt.Errorf("make the VM server's certificate: %w", err)
		}
		certDER = cert.Certificate[0]
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetHTTP2(true)
		srv.Protocols, srv.TLSConfig = &protocols, tlscert.ServerConfig(cert)
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- serve() }()
	// Warmed while the VM waits for the engine's answer, once its request
	// is on its way; a remote VM's server speaks TLS to the network, and is
	// not warmed.
	if !remote && !o.noWarmUp {
		ec.onSent = func() { warm.start(ln.Addr(), o.logger) }
	}
	defer warm.stop()

	// The first timestamp of the VM's log loads the local time zone: done
	// while the VM waits for the engine's answer, rather than after it,
	// when the host may call the VM.
	zoneLoaded := make(chan struct{})
	go func() {
		defer close(zoneLoaded)
		_ = time.Local.String()
	}()
	host, err := ec.initializeTLS(ctx, announce, certDER)
	<-zoneLoaded
	if err != nil {
		if pipe != nil {
			pipe.Close()
		}
		srv.Close()
		<-serveErr
		if !remote && !engineAnswered(err) && hostGoneWithin(hostPid, hostCheckDelay) {
			killOrphanedGroup() // the host died during the handshake
		}
		return err
	}
	o.logger.LogAttrs(ctx, slog.LevelInfo, "handshake accepted", slog.String("addr", announce),
		slog.String("host", host.Name), slog.Uint64("protocol_version", uint64(host.ProtocolVersion)))
	if o.onReady != nil {
		o.onReady(Ready{Addr: announce, Host: *host})
	}

	if pipe != nil || !o.lease {
		// The VM is done with the engine: an idle connection would cost
		// the host a socket and a goroutine for the VM's whole life.
		ec.close()
	}
	var l *lease
	switch {
	case pipe != nil && o.lease:
		l = startPipeLease(pipe)
	case pipe != nil:
		pipe.Close()
	case o.lease:
		// Not under the signal context: a signal must not end the lease
		// before the VM learns from it whether its host is alive.
		l = startLease(context.WithoutCancel(ctx), ec)
	}
	stop := awaitStop(sigCtx, l, serveErr, remote, o.logger)
	hostDead := stop.hostDead

	var result error
	if stop.serveFailed != nil {
		srv.Close() // the connections it had accepted
		result = fmt.Errorf("VM server stopped: %w", stop.serveFailed)
	} else {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
		defer cancel()
		tracked.closeIdle(shutdownCtx)
		if err := srv.Shutdown(shutdownCtx); err != nil {
			o.logger.Warn("graceful shutdown cut short", "error", err)
			srv.Close()
		}
		if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
			result = fmt.Errorf("VM server stopped: %w", err)
		}
	}
	if stop.askLease {
		// Asked after the server's shutdown, which need not wait for it: a
		// host that stops its VM ends the lease at once.
		hostDead = l.brokenWithin(hostCheckDelay)
	}
	if stop.hostEnded && !remote { // a node on another host sends no SIGTERM
		awaitSIGTERM(sigCtx, hostCheckDelay)
	}
	l.stop()
	if remote {
		switch {
		case result != nil:
		case stop.restart != nil:
			// The node ended the session and wants the VM back: exit
			// ExitRestart, for its orchestrator to start it again.
			result = &restartError{msg: connectMessage(stop.restart)}
		case stop.refused != nil:
			result = fmt.Errorf("the node refused the lease: %w", stop.refused)
		case hostDead:
			// Exit non-zero: its orchestrator starts it again, and it
			// handshakes anew once the node is reachable.
			result = ErrNodeLost
		}
		return result
	}
	if hostDead || hostGone(hostPid) {
		o.logger.Warn("the host is gone; ending the VM's process group so that no child outlives it")
		killOrphanedGroup()
	}
	return result
}
