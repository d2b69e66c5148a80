package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

const serveHead = `Usage: vmre serve [flags]

serve runs a bare engine for a VM started by hand or in a debugger. On stdout
it prints the variables that such a VM needs, and nothing else:

  ` + vmre.EngineAddressKey + `=127.0.0.1:PORT
  ` + vmre.EngineTokenKey + `=TOKEN

(with --legacy, the single line ` + launcher.AvalancheEngineAddressKey + `=127.0.0.1:PORT).
Export them and start the VM: serve logs every Initialize attempt with its
outcome on stderr, then the VM's address, and keeps serving, so that the VM
keeps its lease, until SIGINT or SIGTERM. The token is good for one
successful handshake; restart serve for the next one.

Examples:
  vmre serve > engine.env                      # terminal 1; Ctrl-C stops it
  set -a; . ./engine.env; set +a; ./bin/examplevm   # terminal 2, or a debugger

  # the handshake by hand, with the two variables exported:
  curl -s -X POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $` + vmre.EngineTokenKey + `" \
    -d '{"protocolVersion":1,"addr":"127.0.0.1:9"}' \
    http://$` + vmre.EngineAddressKey + `/vmre.runtime.v1.RuntimeService/Initialize

`

// serveFlags are serve's flags.
type serveFlags struct {
	listen          string
	protocolVersion uint
	hostName        string
	legacy          bool
	engineKey       string
	events          string
	log             logFlags
}

func serveCommand(ctx context.Context, args []string, e env) int {
	var f serveFlags
	fs := newFlagSet("serve")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "the `address` of the engine (port 0 picks a free port)")
	fs.UintVar(&f.protocolVersion, "protocol-version", vmre.ProtocolVersion, "the protocol `version` the engine accepts")
	fs.StringVar(&f.hostName, "host-name", vmre.DefaultHostName, "the host's `name` in handshake answers and messages")
	fs.BoolVar(&f.legacy, "legacy", false, "serve the rpcchainvm handshake (/vm.runtime.Runtime/Initialize over gRPC, no token)")
	fs.StringVar(&f.engineKey, "engine-key", "", "the `variable` name printed for the engine address (default "+
		vmre.EngineAddressKey+", or "+launcher.AvalancheEngineAddressKey+" with --legacy)")
	fs.StringVar(&f.events, "events", "", "write every call to the engine as a JSON line (event engine_call) to `file`, "+
		"after a first line with event listening; stdout keeps only the variables")
	f.log.register(fs, slog.LevelInfo)
	if err := parseFlags(fs, serveHead, "", args, e); err != nil {
		return flagExit(err)
	}
	switch {
	case fs.NArg() > 0:
		return usagef(fs, e, "unexpected argument %q: serve takes flags only", fs.Arg(0))
	case f.protocolVersion == 0 || f.protocolVersion > math.MaxUint32:
		return usagef(fs, e, "--protocol-version %d is out of range (1 to %d)", f.protocolVersion, uint32(math.MaxUint32))
	}
	if f.engineKey == "" {
		f.engineKey = vmre.EngineAddressKey
		if f.legacy {
			f.engineKey = launcher.AvalancheEngineAddressKey
		}
	}

	log := f.log.logger(e)
	if f.events == "-" {
		return usagef(fs, e, "--events -: stdout carries the variables only; give a file")
	}
	events, err := openEventLog(f.events, e.stdout)
	if err != nil {
		return usagef(fs, e, "%v", err)
	}
	defer events.close()
	// Every call is logged at info or warn: keep them visible whatever
	// --log-level says.
	calls := logCalls(f.log.loggerAtLeast(e, slog.LevelInfo).With(slog.String("component", "engine")), events)
	sig := catchSignals(ctx)
	defer sig.stop()

	ln, addr, err := listen(f.listen)
	if err != nil {
		return fail(log, "vmre serve failed", err)
	}
	events.write(event{Event: "listening", Addr: addr})
	accept := server.AcceptVersions(f.hostName, f.protocolVersion)
	if f.legacy {
		return f.serveLegacy(sig, e, log, calls, ln, addr, accept)
	}
	return f.serveNative(sig, e, log, calls, ln, addr, accept)
}

// logCalls logs every call to the engine with its outcome, and for a
// version mismatch which side to upgrade. Unlike the engine's own log,
// which keeps 10 refusals a second, it misses none: serve is for watching
// one VM's attempts.
func logCalls(log *slog.Logger, events *eventLog) *server.Hooks {
	return &server.Hooks{Call: func(c server.Call) {
		events.write(event{Event: "engine_call", Procedure: c.Procedure, Protocol: c.Protocol, Peer: c.Peer,
			Addr: c.Addr, ProtocolVersion: c.ProtocolVersion, Result: c.Result(), Error: errText(c.Err)})
		attrs := []slog.Attr{slog.String("procedure", c.Procedure), slog.String("peer", c.Peer), slog.String("protocol", c.Protocol)}
		if c.Addr != "" || c.ProtocolVersion != 0 {
			attrs = append(attrs, slog.String("addr", c.Addr), slog.Uint64("protocol_version", uint64(c.ProtocolVersion)))
		}
		if c.Accepted() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "call accepted", attrs...)
			return
		}
		attrs = append(attrs, slog.String("code", c.Result()), slog.String("error", connectMessage(c.Err)))
		var mismatch *vmre.VersionMismatchError
		if errors.As(c.Err, &mismatch) {
			attrs = append(attrs, slog.String("hint", mismatch.Hint()))
		}
		log.LogAttrs(context.Background(), slog.LevelWarn, "call refused", attrs...)
	}}
}

func (f *serveFlags) serveNative(sig *signals, e env, log *slog.Logger, calls *server.Hooks, ln net.Listener, addr string, accept vmre.Initializer) int {
	engine := server.New(server.Config{HostName: f.hostName, Hooks: calls})
	defer engine.Close()
	launch, err := engine.NewLaunch(server.LaunchConfig{Initializer: accept})
	if err != nil {
		ln.Close()
		return fail(log, "vmre serve failed", err)
	}
	defer launch.End()
	fmt.Fprintf(e.stdout, "%s=%s\n%s=%s\n", f.engineKey, addr, vmre.EngineTokenKey, launch.Token())
	log.Info("engine listening: export the two lines printed on stdout, then start the VM",
		"addr", addr, "protocol_version", f.protocolVersion, "host_name", f.hostName)
	log.Info("handshake by hand: curl -s -X POST -H 'Content-Type: application/json' -H \"Authorization: Bearer $" +
		vmre.EngineTokenKey + "\" -d '{\"protocolVersion\":" + fmt.Sprint(f.protocolVersion) + ",\"addr\":\"127.0.0.1:9\"}' http://" +
		addr + "/vmre.runtime.v1.RuntimeService/Initialize")
	return serveUntilInterrupted(sig, log, ln, engine.Handler(), launch, func() {
		launch.End()   // the VM's lease ends: it shuts down by itself
		engine.Close() // before the HTTP server waits for open streams
	})
}

func (f *serveFlags) serveLegacy(sig *signals, e env, log *slog.Logger, calls *server.Hooks, ln net.Listener, addr string, accept vmre.Initializer) int {
	ll, err := server.ListenLegacy(server.LegacyConfig{Initializer: accept, Hooks: calls, Listener: ln})
	if err != nil {
		return fail(log, "vmre serve failed", err)
	}
	defer ll.End()
	fmt.Fprintf(e.stdout, "%s=%s\n", f.engineKey, addr)
	log.Info("legacy engine listening: export the line printed on stdout, then start the plugin",
		"addr", addr, "protocol_version", f.protocolVersion)
	select {
	case <-ll.Initialized():
		vmAddr, version := ll.Result()
		log.Info("vm initialized; the legacy listener is closed (the first valid call wins), serving until interrupted",
			"addr", vmAddr, "protocol_version", version)
		<-sig.first.Done()
	case <-sig.first.Done():
	}
	log.Info("engine stopping", "reason", context.Cause(sig.first).Error())
	return exitOK
}

// serveUntilInterrupted serves h on ln until a signal, logging the VM's
// address once it has completed its handshake. It calls release before it
// shuts the server down.
func serveUntilInterrupted(sig *signals, log *slog.Logger, ln net.Listener, h http.Handler, hs server.Handshake, release func()) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, h) }()

	initialized := hs.Initialized()
	for {
		select {
		case <-initialized:
			initialized = nil
			addr, version := hs.Result()
			log.Info("vm initialized; the engine keeps serving until interrupted",
				"addr", addr, "protocol_version", version)
		case <-sig.first.Done():
			log.Info("engine stopping", "reason", context.Cause(sig.first).Error())
			release()
			cancel()
			if err := <-served; err != nil {
				log.Warn("engine stopped with an error", "error", err.Error())
			}
			return exitOK
		case err := <-served:
			release()
			return fail(log, "engine stopped", fmt.Errorf("serve: %w", err))
		}
	}
}
