// Command examplevm is a small but real vmre VM plugin: an in-memory chain
// served as vmre.example.v1.ChainService, with grpc.health.v1, through
// client.Serve. A host starts it (`vmre run examplevm`); run with --help for
// its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
)

// version is the VM's version; set it with -ldflags "-X main.version=v1.2.3".
var version string

// errCrash ends the VM --exit-after its handshake.
var errCrash = errors.New("exiting 1 as --exit-after asks")

// handshakeAnswerGrace is how long a signal that comes during the handshake
// lets the host's answer come, well within a host's graceful timeout.
const handshakeAnswerGrace = time.Second

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	// Catch SIGTERM from the start: client.Serve also does, but a signal
	// that came earlier would kill the process instead of stopping it.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if err := checkEnv(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}

	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	started := time.Now()
	c := newChain(nil)
	log.LogAttrs(ctx, slog.LevelInfo, "examplevm starting", slog.String("version", vmVersion()),
		slog.Uint64("protocol_version", uint64(cfg.protocolVersion)),
		slog.String("genesis_id", c.LastAccepted().ID), slog.Bool("no_handshake", cfg.noHandshake))

	h := newHandler(c, log, cfg.unhealthy)
	var crashed context.Context // ends with errCrash --exit-after the handshake
	if cfg.noHandshake {
		err = serveWithoutHandshake(ctx, h, log)
	} else {
		// A signal does not cut the handshake short at once: the host stops
		// a VM whose handshake it refused a moment after its answer, and the
		// VM should read that answer and log why. A signal caught above
		// stops the VM once its handshake is accepted, or cuts the call
		// short when no answer has come within handshakeAnswerGrace.
		serveCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		defer cancel(nil)
		crashed = serveCtx
		ready := make(chan struct{})
		defer context.AfterFunc(ctx, func() {
			select {
			case <-ready:
			default:
				log.Info("stop asked during the handshake: waiting for the host's answer first",
					"reason", context.Cause(ctx).Error(), "grace", handshakeAnswerGrace)
			}
			select {
			case <-ready:
			case <-serveCtx.Done():
			case <-time.After(handshakeAnswerGrace):
			}
			cancel(context.Cause(ctx))
		})()
		err = client.Serve(serveCtx, h, client.WithLogger(log), client.WithProtocolVersion(cfg.protocolVersion),
			client.WithOnReady(func(client.Ready) {
				close(ready)
				if cfg.exitAfter > 0 {
					time.AfterFunc(cfg.exitAfter, func() { cancel(errCrash) })
				}
			}))
	}
	if crashed != nil && errors.Is(context.Cause(crashed), errCrash) {
		log.LogAttrs(ctx, slog.LevelError, "examplevm crashed", slog.String("reason", errCrash.Error()),
			slog.Duration("exit_after", cfg.exitAfter))
		return 1
	}

	attrs := []slog.Attr{slog.Uint64("last_height", c.LastAccepted().Height),
		slog.String("uptime", time.Since(started).Round(time.Millisecond).String())}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// A signal cut short a handshake that got no answer: the host
		// asked the VM to stop, so it stops cleanly.
		attrs = append(attrs, slog.String("reason", context.Cause(ctx).Error()+" during the handshake"))
		err = nil
	}
	if err == nil {
		log.LogAttrs(ctx, slog.LevelInfo, "examplevm stopped", attrs...)
		return 0
	}
	attrs = append(attrs, slog.String("error", err.Error()))
	if mismatch, ok := errors.AsType[*vmre.VersionMismatchError](err); ok {
		attrs = append(attrs, slog.String("hint", mismatch.Hint()))
	}
	log.LogAttrs(ctx, slog.LevelError, "examplevm stopped", attrs...)
	// 2 for a VM that cannot run as configured, 75 for a remote VM whose
	// node ended its session or was lost (its orchestrator starts it
	// again), 1 for any other failure.
	return client.ExitCode(err)
}

// checkEnv refuses to run without the host's variables, as client.Serve
// does, before anything is logged: a person who started the VM by hand
// reads one plain sentence on what to do.
func checkEnv() error {
	addr, token := os.Getenv(vmre.EngineAddressKey), os.Getenv(vmre.EngineTokenKey)
	switch {
	case addr == "" && token == "":
		return client.ErrNotPlugin
	case addr == "":
		return fmt.Errorf("%w (%s is not set)", client.ErrNotPlugin, vmre.EngineAddressKey)
	case token == "":
		return fmt.Errorf("%w (%s is not set)", client.ErrNotPlugin, vmre.EngineTokenKey)
	}
	return nil
}

func vmVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
