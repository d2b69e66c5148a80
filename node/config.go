package node

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// Config configures a Node. Every zero value means the documented default;
// New never writes into it.
type Config struct {
	// PluginDir is the directory of the node's VMs (docs/NODE.md); "" for
	// a node that runs the VMs of VMs alone. Aliases and Pins are its
	// aliases and pins files (default: none); RequirePins refuses every
	// file without a pin.
	PluginDir, Aliases, Pins string
	RequirePins              bool
	// KeepRemoved keeps a VM whose file left the plugin directory running
	// (shown removed) until it is stopped, instead of stopping it with its
	// graceful timeout and forgetting it.
	KeepRemoved bool
	// VMs are further VMs to run, given by their command rather than a
	// plugin directory: `vmre run`'s one plugin.
	VMs []VM

	// Restart is when a VM that ended is launched again, and Backoff the
	// wait before it (supervise's defaults).
	Restart supervise.Policy
	Backoff supervise.Backoff
	// Liveness probes each running VM of this host (not the remote ones)
	// with the health probe of `vmre run --check`: one that fails
	// Liveness.Failures probes in a row is unhealthy, stopped gracefully
	// and launched again as Restart says (supervise.Liveness). Zero: no
	// probes.
	Liveness supervise.Liveness
	// Rollout says how a VM of the plugin directory whose file changed is
	// rolled out (docs/NODE.md, "Upgrading a VM").
	Rollout RolloutConfig
	// Launch configures every launch (its zero values: the launcher's
	// defaults). The node sets its Engine and EngineAddr to its own
	// engine and Addr, joins its Hooks after the node's, and sets its
	// Logger to Logger.
	Launch launcher.Config

	// Listener, when set, is where Run serves Handler (HTTP/1.1 and h2c)
	// until the VMs have stopped; Run closes it.
	Listener net.Listener
	// Handler is what Run serves on Listener (default: the node's own
	// Handler): set it to a router that mounts the node's Handler beside
	// routes of your own.
	Handler http.Handler
	// Addr is the host:port where VMs on this host reach the node's
	// Handler for their handshake (default: Listener's address, with
	// loopback for an unspecified IP). Required unless Listener is set or
	// Launch.Legacy, whose VMs handshake on listeners of their own.
	Addr string

	// AdminToken, when set, is required as "Authorization: Bearer TOKEN" by
	// the admin service, and by GET /metrics with MetricsToken.
	AdminToken   string
	MetricsToken bool

	// Remote lets VMs on other hosts, declared by NAME.remote files of the
	// plugin directory, handshake with the engine over TLS
	// (docs/REMOTE.md). Off when Remote.Listen is "".
	Remote RemoteConfig

	// DataDir is the node's own directory: the engine's certificate, the
	// remote VMs' tokens, the operators' stops, the sandboxed VMs' own
	// directories, the record of the running VMs, the VMs' versions and
	// the copies of their bytes (docs/NODE.md). Required with Remote and
	// Sandbox; without it, operators' stops and the versions last as long
	// as the node, a node killed (SIGKILL) and started again cannot stop
	// the VMs it left running, the copies are kept in a temporary
	// directory that Run removes when it returns (or New, when it fails),
	// and only those a rollout needs are made: an unpinned VM runs from
	// its file until its first rollout. A relative DataDir is taken from
	// the working directory at New.
	DataDir string

	// KeepProcess leaves the process as Run finds it. By default Run makes
	// the process the child subreaper of its VMs' descendants, so that a
	// VM's stop ends the processes it left behind (launcher.StartSubreaper),
	// and marks every descriptor the process inherited close-on-exec, so
	// that no VM gets one (launcher.CloseInheritedFDs). An embedder whose
	// program starts children of its own in process groups or sessions of
	// their own, or hands inherited descriptors to children on purpose,
	// sets it (docs/RELIABILITY.md, "No survivors").
	KeepProcess bool

	// Sandbox is how the policy of each VM the node launches is applied
	// (docs/SANDBOX.md; default sandbox.Off). A sandboxed VM gets a data
	// directory of its own, DataDir/vms/NAME/data (VMRE_DATA_DIR), and a
	// temporary one, DataDir/vms/NAME/tmp (TMPDIR), emptied before each
	// launch. SandboxPolicy holds the VMs' policies, by name or alias
	// (default: the default policy for every VM). The program must call
	// sandbox.Init first in main: the init step re-executes it.
	Sandbox       sandbox.Level
	SandboxPolicy *sandbox.File
	// DiscoveryDir, when set, is where Run leaves a file naming the node's
	// URL, Name, pid, start time and AdminTokenFile, for the CLI's clients
	// (vmre ps); it is removed when Run returns.
	DiscoveryDir   string
	Name           string
	AdminTokenFile string

	// Registerer, when set, gets the node's collectors (an embedder's own
	// registry); GET /metrics serves it when it is also a
	// prometheus.Gatherer. Default: a registry of the node's own, with the
	// Go and process collectors.
	Registerer prometheus.Registerer
	// Logger receives the node's records and one per line of each VM's
	// output (default: discard).
	Logger *slog.Logger
	// LogBacklogBytes is how much of each VM's recent log records the node
	// keeps for TailLogs (vmre logs), counted as admin.NewLogs counts them
	// (default admin.DefaultBacklogBytes).
	LogBacklogBytes int
	// Hooks, when set, are told of what happens to the node.
	Hooks *Hooks
}

// RolloutConfig says how the node rolls out a new version of a VM of its
// plugin directory: at a reload that finds its file changed, at an
// operator's Rollout or Rollback. Zero values mean supervise's defaults.
type RolloutConfig struct {
	// Strategy is how a new version takes the old one's place
	// (supervise.Replace), except for the VMs of StartFirst (names or
	// aliases), which can run twice at once: theirs start beside the old.
	Strategy   supervise.Strategy
	StartFirst []string
	// MinHealthy is how long a new version must stay up and answer its
	// health probe, and HealthyDeadline the time it has to get there.
	MinHealthy, HealthyDeadline time.Duration
	// NoAutoRevert keeps a version that failed its rollout as the VM's
	// version, for debugging, instead of going back to the one before.
	NoAutoRevert bool
	// ProbeInterval is the wait between the health probes of a new
	// version.
	ProbeInterval time.Duration
	// Keep is how many versions each VM keeps in its history, with a copy
	// of their bytes (DefaultKeepVersions).
	Keep int
}

// VM is a VM given by its command.
type VM struct {
	// Name names it (required).
	Name string
	// Path and Args are its command, as exec.Command takes them.
	Path string
	Args []string
}

// RemoteConfig configures the engine's TLS listener for remote VMs.
type RemoteConfig struct {
	// Listen is the address of the engine's TLS listener ("" for none).
	Listen string
	// Advertise is the host:port remote VMs dial (default: Listen's
	// address, which must then name a host).
	Advertise string
	// Certificate is the engine's (default: a self-signed one, made once
	// and kept in DataDir as engine.key and engine.crt).
	Certificate *tls.Certificate
	// Pings notice a cut link (zero: server.DefaultPings).
	Pings server.Pings
	// TokenHint is the advice the engine gives a VM whose token it does
	// not know (server.Config.TokenHint): where the current token is.
	TokenHint string
}

// Hooks tell of what happens to a node. Each is optional, called
// synchronously, and must not block or call the Node.
type Hooks struct {
	// State is told of every change of a VM's state, on the goroutine of
	// the change, in the order of the VM's changes.
	State func(supervise.VM)
	// Removed is told that the VM name left the node (its file or
	// declaration left the plugin directory), after its last State: it is
	// no longer listed, and a VM of that name may come back.
	Removed func(name string)
	// Reload is told of each load of the plugin directory, the first one
	// included.
	Reload func(Report)
	// EngineListening is told where remote VMs reach the engine, and its
	// certificate's fingerprint, once Run serves them.
	EngineListening func(addr, certSHA256 string)
	// Serving is told once Run has supervised the VMs of its first load
	// and left its discovery file (with DiscoveryDir): the clients find
	// the node from then on.
	Serving func()
	// RolloutStarted is told when a VM's rollout begins, RolloutHealthy
	// when its new version proved healthy and runs, RolloutReverted when
	// it failed and the VM goes back to the version before, RolloutFailed
	// when it failed and stays (NoAutoRevert) or was interrupted. The
	// versions are digests. Each comes after the node has recorded it in
	// the VM's history.
	RolloutStarted, RolloutHealthy, RolloutReverted, RolloutFailed func(supervise.RolloutEvent)
	// Survivor is told of each VM that a previous run of the node left
	// running (it was killed) and that Run stopped at its start, before it
	// launched anything (DataDir's record of the running VMs).
	Survivor func(SurvivorInfo)
}

// Report is what a load of the plugin directory found and did.
type Report struct {
	// Added are the VMs that started (remote ones: that were enrolled).
	Added []string
	// Changed are the VMs whose file changed: their rollout started (or,
	// for a VM an operator stopped, starts when it is started).
	Changed []string
	// KnownBad are the VMs whose file holds a version that failed its
	// rollout before, or that an operator rolled back from: it is not
	// rolled out again until its bytes change or a rollout forces it.
	KnownBad []string
	// Unchanged are the VMs loaded before and left as they run.
	Unchanged []string
	// Removed are the VMs whose file or declaration left the directory:
	// stopped and forgotten, or kept running with KeepRemoved.
	Removed []string
	// Failed are the entries of the directory that were refused.
	Failed []*registry.Problem
}
