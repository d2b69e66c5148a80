// Package node is a vmre node as one type: it composes the engine (package
// server), the plugin directory (package registry), the supervisor of the
// VMs (package supervise), the enrollments of remote VMs, the admin
// service (package admin), the metrics (package metrics) and the file that
// tells the CLI where the node listens, and owns the node's data directory.
// `vmre node` and `vmre run` are this package behind flags; a node
// developer embeds the same node in their own:
//
//	n, err := node.New(node.Config{PluginDir: "plugins", Listener: ln, Handler: r})
//	r.Mount("/", n.Handler())
//	err = n.Run(ctx)
//
// The plugin directory, its aliases and pins, and its remote declarations
// are the node's desired state. Reload reads them again and reconciles
// what runs with them (docs/NODE.md): new VMs start, a removed VM is
// stopped with its graceful timeout and forgotten (Config.KeepRemoved
// keeps it running, marked removed), a removed remote VM's token is
// refused at once, a changed file rolls out (health-gated, and reverted
// by itself when it fails: docs/NODE.md, "Upgrading a VM"), and the
// sealed copy of an old version is closed as soon as no launch can use
// it.
//
// Each VM of the plugin directory keeps its versions in the data
// directory: the history of the last ones (which runs, which failed and
// why) and a copy of their bytes, from which the node runs an unpinned VM
// and goes back to an earlier version after its file changed. Rollout,
// Rollback and History are an operator's hands on them.
//
// Run is one run group (oklog/run): each part of the node is an actor,
// and the first to end stops the others in a fixed order. On the end of
// Run's context it removes the discovery file, stops serving remote VMs,
// stops every VM in parallel (SIGTERM, then SIGKILL after the graceful
// timeout, or at once after Kill), and only then stops serving the node's
// HTTP, so that VMs keep their engine until they are gone. A node made by
// New and never run gives back what New took with Close.
//
// Config.Liveness probes the running VMs with the health probe of `vmre
// run --check`: a VM that fails them is unhealthy, stopped gracefully and
// launched again by its policy. Hooks and the admin service's WatchVMs
// tell of every change of a VM's state, and of a VM that leaves the node.
//
// An operator's stop (Node.Stop, the admin service's StopVM) is kept in
// the data directory and outlives a restart of the node: a VM stopped on
// purpose stays stopped until it is started. Every file of the data
// directory is written whole or not at all (internal/atomicfile), so a
// node killed at any point starts again, with the engine certificate whose
// fingerprint its remote VMs pin.
package node
