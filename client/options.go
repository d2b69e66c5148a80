package client

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
)

// Protocol is the RPC protocol used to call the engine.
type Protocol int

const (
	// ProtocolConnect is the Connect protocol (the default).
	ProtocolConnect Protocol = iota
	// ProtocolGRPC is gRPC.
	ProtocolGRPC
	// ProtocolGRPCWeb is gRPC-Web.
	ProtocolGRPCWeb
)

// DefaultShutdownTimeout bounds Serve's graceful shutdown.
const DefaultShutdownTimeout = 5 * time.Second

// An Option configures Initialize and Serve.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	protocol        Protocol
	protocolVersion uint
	httpClient      connect.HTTPClient
	logger          *slog.Logger
	engineAddr      string
	token           string
	engineCert      string // the engine's certificate fingerprint: a remote VM
	enginePing      string // how long the engine's connection stays silent before a ping, as a duration
	getenv          func(string) string
	listener        net.Listener
	shutdownTimeout time.Duration
	lease           bool
	noWarmUp        bool
	onReady         func(Ready)
}

func newOptions(opts []Option) *options {
	o := &options{
		protocolVersion: vmre.ProtocolVersion,
		getenv:          os.Getenv,
		shutdownTimeout: DefaultShutdownTimeout,
		lease:           true,
	}
	for _, opt := range opts {
		opt.apply(o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.engineAddr == "" {
		o.engineAddr = o.getenv(vmre.EngineAddressKey)
	}
	if o.token == "" {
		o.token = o.getenv(vmre.EngineTokenKey)
	}
	if o.engineCert == "" {
		o.engineCert = strings.TrimSpace(o.getenv(vmre.EngineCertKey))
	}
	if o.enginePing == "" {
		o.enginePing = strings.TrimSpace(o.getenv(vmre.EnginePingKey))
	}
	return o
}

// WithProtocol selects the protocol used to call the engine.
func WithProtocol(p Protocol) Option { return optionFunc(func(o *options) { o.protocol = p }) }

// WithProtocolVersion sets the protocol version the VM announces (default
// vmre.ProtocolVersion).
func WithProtocolVersion(v uint) Option {
	return optionFunc(func(o *options) { o.protocolVersion = v })
}

// WithHTTPClient sets the HTTP client used to call the engine (default:
// HTTP/1.1 for Connect and gRPC-Web, HTTP/2 without TLS for gRPC). With an
// engine certificate (WithEngineCert, or vmre.EngineCertKey), the client
// given here is used as it is: it must trust that certificate itself.
func WithHTTPClient(c connect.HTTPClient) Option {
	return optionFunc(func(o *options) { o.httpClient = c })
}

// WithLogger sets the logger for Serve's progress (default slog.Default(),
// whose records the host receives through the VM's stderr).
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithEngine sets the engine's address and token instead of reading them
// from the environment variables vmre.EngineAddressKey and vmre.EngineTokenKey.
func WithEngine(addr, token string) Option {
	return optionFunc(func(o *options) { o.engineAddr, o.token = addr, token })
}

// WithEngineCert makes the VM reach the engine over TLS, trusting exactly
// the certificate whose SHA-256 (hex) is fingerprint, instead of reading it
// from vmre.EngineCertKey: a VM on another host than its node
// (docs/REMOTE.md).
func WithEngineCert(fingerprint string) Option {
	return optionFunc(func(o *options) { o.engineCert = fingerprint })
}

// WithEnginePing sets how long a remote VM lets its connection to the
// engine stay silent before it pings it, and then waits for the answer,
// instead of reading it from vmre.EnginePingKey (default 5 s): a cut link
// ends the VM within twice that (docs/REMOTE.md).
func WithEnginePing(d time.Duration) Option {
	return optionFunc(func(o *options) { o.enginePing = d.String() })
}

// WithListener makes Serve serve on l instead of a new listener on
// 127.0.0.1:0. Serve closes it.
func WithListener(l net.Listener) Option { return optionFunc(func(o *options) { o.listener = l }) }

// WithShutdownTimeout bounds Serve's graceful shutdown (default
// DefaultShutdownTimeout); requests still running then are cut off.
func WithShutdownTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.shutdownTimeout = d })
}

// WithoutLease makes Serve skip the lease: the VM then does not notice
// when its host dies (on Linux the parent-death signal still ends it).
func WithoutLease() Option { return optionFunc(func(o *options) { o.lease = false }) }

// WithoutWarmUp makes Serve skip its warm-up: the two requests the VM makes
// to its own server while it waits for the engine's answer, so that the
// host's first call finds the serving path warm (docs/VM-AUTHORS.md, "The
// host's first call"). The warm-up's requests never reach the VM's handler;
// a listener given with WithListener accepts their two connections.
func WithoutWarmUp() Option { return optionFunc(func(o *options) { o.noWarmUp = true }) }

// Ready is what Serve knows once the VM is ready: its server serves, and the
// host accepted its handshake.
type Ready struct {
	// Addr is the VM server's address, as the VM announced it.
	Addr string
	// Host is what the engine said of the host.
	Host Host
}

// WithOnReady makes Serve call f, on its own goroutine, once the VM's
// server serves and the host has accepted the handshake: the moment the
// host may call the VM. f must not block: Serve goes on to hold the lease
// and wait for a stop only when it returns.
func WithOnReady(f func(Ready)) Option { return optionFunc(func(o *options) { o.onReady = f }) }
