// Package vmre is the seed contract of the VM Runtime Engine: the names that
// the host side (package launcher), the engine (package server) and the VM
// side (package client) share.
//
// A host launches a VM plugin as a subprocess with two environment variables,
// EngineAddressKey and EngineTokenKey. The VM opens its own RPC server,
// calls the engine's Initialize with its protocol version and address, and
// the host then talks to the VM at that address. docs/PROTOCOL.md is the
// wire specification.
package vmre

import (
	"context"
	"time"
)

const (
	// EngineAddressKey is the environment variable holding the host:port of
	// the engine a launched VM must call back.
	EngineAddressKey = "VMRE_RUNTIME_ENGINE_ADDR"
	// EngineTokenKey is the environment variable holding the launch's
	// bearer token (256 random bits, hex-encoded).
	EngineTokenKey = "VMRE_RUNTIME_ENGINE_TOKEN"
	// EngineCertKey is the environment variable holding the SHA-256 (hex) of
	// the engine's TLS certificate, for a VM on another host: the VM then
	// reaches the engine over TLS and trusts exactly that certificate
	// (docs/REMOTE.md). Unset for a VM that the host started.
	EngineCertKey = "VMRE_RUNTIME_ENGINE_CERT_SHA256"
	// EnginePingKey is the environment variable holding how long a remote
	// VM lets its connection to the engine stay silent before it pings it,
	// and then waits for the answer (a Go duration such as "5s"): the
	// node's own ping, so that both ends notice a cut link alike
	// (docs/REMOTE.md). Unset: 5 s.
	EnginePingKey = "VMRE_RUNTIME_ENGINE_PING"
	// LeaseFDKey is the environment variable naming the file descriptor of
	// the VM's end of its lease pipe, when the host gives it one: the read
	// end of a pipe whose write end only the host holds. The host writes a
	// byte and closes it to end the lease; an end of file without a byte
	// means the host is gone (docs/PROTOCOL.md).
	LeaseFDKey = "VMRE_RUNTIME_LEASE_FD"
	// DataDirKey is the environment variable naming the VM's own data
	// directory, which a sandboxed VM may read and write and which outlives
	// its runs (docs/SANDBOX.md). Unset for a VM that has none.
	DataDirKey = "VMRE_DATA_DIR"

	// DefaultHandshakeTimeout is how long a host waits for a VM to call
	// Initialize after it was started.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultGracefulTimeout is how long a host waits for a VM to exit after
	// SIGTERM before it sends SIGKILL.
	DefaultGracefulTimeout = 5 * time.Second

	// DefaultHostName is the host name used in handshake messages.
	DefaultHostName = "vmre"
	// ProtocolVersion is the native protocol version of this release. Hosts
	// and VMs built from the same release agree on it.
	ProtocolVersion uint = 1
)

// Initializer completes the handshake of one launch. The engine calls it
// once the VM's token and address are valid; an error that wraps
// ErrProtocolVersionMismatch rejects the VM's version. It may be called
// more than once for a launch (a retry, or a second VM call that the engine
// then refuses), concurrently, and must not block.
type Initializer interface {
	Initialize(ctx context.Context, protocolVersion uint, vmAddr string) error
}

// Stopper stops a running VM. Stop never blocks and repeated calls are no-ops.
type Stopper interface {
	Stop(ctx context.Context)
}

// Tracker keeps track of running VMs.
type Tracker interface {
	TrackRuntime(runtime Stopper)
}

// Manager tracks runtimes and stops them all at once.
type Manager interface {
	Tracker
	// Stop stops every tracked runtime in parallel and waits until they
	// have all ended, or ctx is done.
	Stop(ctx context.Context)
}

// Status is what a host learns from a completed launch.
type Status struct {
	// Pid is the VM's process id.
	Pid int
	// Addr is the host:port of the VM's RPC server.
	Addr string
}
