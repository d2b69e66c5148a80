package launcher

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/server"
)

// Legacy engine address variables read by rpcchainvm plugins.
const (
	AvalancheEngineAddressKey = "AVALANCHE_VM_RUNTIME_ENGINE_ADDR"
	OdysseyEngineAddressKey   = "ODYSSEY_VM_RUNTIME_ENGINE_ADDR"
)

// defaultEnvAllowlist is DefaultEnvAllowlist's list.
var defaultEnvAllowlist = []string{
	"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LC_*",
	"GODEBUG", "GORACE", "GOMAXPROCS", "GOMEMLIMIT", "GOTRACEBACK", "GOCOVERDIR", "GRPC_*", "NO_COLOR",
}

// DefaultEnvAllowlist returns the variables of the host's environment that
// a VM inherits by default. A name ending in '*' is a prefix. The slice is
// the caller's own: extend it and set Config.EnvAllowlist.
func DefaultEnvAllowlist() []string { return slices.Clone(defaultEnvAllowlist) }

// Config configures a Launcher. Every zero value means the documented
// default; New never writes defaults back into it.
type Config struct {
	// ProtocolVersion is the version the host speaks (default
	// vmre.ProtocolVersion). A VM that sends another version, and none of
	// AcceptVersions, fails its handshake with ErrProtocolVersionMismatch.
	ProtocolVersion uint
	// AcceptVersions are further versions the host accepts.
	AcceptVersions []uint
	// HostName names the host in handshake messages (default
	// vmre.DefaultHostName; "odysseygo" reproduces that node's messages).
	HostName string

	// Legacy serves the rpcchainvm handshake (/vm.runtime.Runtime, no
	// token) on a loopback listener of each launch's own.
	Legacy bool
	// EngineAddressKey is the variable that carries the engine address to
	// the VM (default vmre.EngineAddressKey, or AvalancheEngineAddressKey
	// with Legacy).
	EngineAddressKey string
	// LegacyShutdown calls the VM's /vm.VM/Shutdown before SIGTERM, so that
	// rpcchainvm plugins, which ignore SIGTERM until then, stop gracefully.
	// Leave it off when the node's own VM client calls Shutdown.
	LegacyShutdown bool

	// HandshakeTimeout bounds the wait for the VM's Initialize (default
	// vmre.DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// GracefulTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (default vmre.DefaultGracefulTimeout).
	GracefulTimeout time.Duration

	// Logger receives the launcher's progress and one record per line of
	// the VM's output (default: discard). Its records are for people; code
	// that needs to know what happened uses Hooks.
	Logger *slog.Logger
	// Hooks, when set, are told of the events of every launch.
	Hooks *Hooks
	// Name names the VM in logs and events (default: the base name of the
	// command; WithName sets it for one launch).
	Name string
	// Stdout and Stderr, when set, also get the VM's raw output, line by line.
	Stdout, Stderr io.Writer

	// Env is added to the VM's environment (KEY=VALUE).
	Env []string
	// InheritEnv gives the VM the host's whole environment. By default it
	// gets only the variables named in EnvAllowlist, plus Env and the
	// engine's variables. A command whose Env is set keeps that Env.
	InheritEnv bool
	// EnvAllowlist replaces DefaultEnvAllowlist().
	EnvAllowlist []string

	// Engine is an engine the node already serves, for example mounted in
	// its HTTP mux; EngineAddr is where VMs reach it. When Engine is nil,
	// the Launcher serves an engine of its own on 127.0.0.1.
	Engine     *server.Engine
	EngineAddr string
	// AllowRemote lets VMs announce addresses that are not loopback.
	AllowRemote bool
	// NoCallerCheck turns off the engine's check, on Linux, that an
	// Initialize comes from the launched VM or one of its descendants and
	// announces an address they listen on (docs/PROTOCOL.md, "The caller
	// check"). Without it, a process that learns a VM's token (another VM
	// of the same user reads /proc/PID/environ) can complete the VM's
	// handshake in its place. Turn it off only where the engine cannot see
	// its callers' sockets: behind a proxy, or in a network namespace of
	// its own.
	NoCallerCheck bool

	// MaxConcurrentLaunches bounds how many launches run at once, from
	// exec to the end of the handshake (default 4 per CPU, zero meaning
	// that default; negative: no limit). The others wait for their turn
	// before exec, so that their handshake timeouts have not begun; a
	// launch whose context ends while it waits fails in PhaseExec with the
	// context's cause.
	MaxConcurrentLaunches int

	// Start, when set, starts each VM's command in place of its own Start
	// method: it must start cmd and set cmd.Process, as (*exec.Cmd).Start
	// does, or return why it could not. The launcher calls it on the one OS
	// thread that starts its VMs, locked for the Launcher's life (a VM's
	// parent-death signal follows that thread), so a Start may ptrace the
	// process it starts until it returns. sandbox.Start is one: it applies
	// a sandboxed command's policy without the init step's second program.
	Start func(cmd *exec.Cmd) error
}

// settings is Config with its defaults applied.
type settings struct {
	Config
	versions []uint
}

func (c Config) settings() (settings, error) {
	s := settings{Config: c}
	if s.ProtocolVersion == 0 {
		s.ProtocolVersion = vmre.ProtocolVersion
	}
	s.versions = append([]uint{s.ProtocolVersion}, s.AcceptVersions...)
	if slices.Contains(s.versions, 0) {
		return s, fmt.Errorf("%w: protocol version 0 is not a version", vmre.ErrInvalidConfig)
	}
	if s.HostName == "" {
		s.HostName = vmre.DefaultHostName
	}
	if s.EngineAddressKey == "" {
		s.EngineAddressKey = vmre.EngineAddressKey
		if s.Legacy {
			s.EngineAddressKey = AvalancheEngineAddressKey
		}
	}
	if s.HandshakeTimeout < 0 || s.GracefulTimeout < 0 {
		return s, fmt.Errorf("%w: timeouts must not be negative", vmre.ErrInvalidConfig)
	}
	if s.HandshakeTimeout == 0 {
		s.HandshakeTimeout = vmre.DefaultHandshakeTimeout
	}
	if s.GracefulTimeout == 0 {
		s.GracefulTimeout = vmre.DefaultGracefulTimeout
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.EnvAllowlist == nil {
		s.EnvAllowlist = defaultEnvAllowlist
	}
	if s.Engine != nil && s.EngineAddr == "" {
		return s, fmt.Errorf("%w: Config.Engine needs Config.EngineAddr, the address VMs dial to reach it", vmre.ErrInvalidConfig)
	}
	if s.EngineAddr != "" {
		if err := checkEngineAddr(s.EngineAddr); err != nil {
			return s, err
		}
	}
	if s.Engine != nil && s.Legacy {
		return s, fmt.Errorf("%w: Config.Engine serves the native handshake; Legacy launches use a listener of their own", vmre.ErrInvalidConfig)
	}
	return s, nil
}

// checkEngineAddr refuses an EngineAddr that a VM could not dial: the
// variable carries a host:port, and a URL in it would fail only later,
// inside the VM.
func checkEngineAddr(addr string) error {
	if strings.Contains(addr, "://") {
		return fmt.Errorf("%w: Config.EngineAddr %q is a URL: give the host:port VMs dial, such as 127.0.0.1:8080", vmre.ErrInvalidConfig, addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: Config.EngineAddr %q is not a host:port: %w", vmre.ErrInvalidConfig, addr, err)
	}
	return nil
}
