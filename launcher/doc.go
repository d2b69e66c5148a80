// Package launcher is the host side of a VM's life: it execs the VM plugin
// with the engine's address and a launch token, waits for its handshake,
// pipes its output into the host's logger, and stops it with SIGTERM, a
// graceful timeout and SIGKILL to its whole process group.
//
//	l, err := launcher.New(launcher.Config{Logger: logger, Hooks: hooks})
//	if err != nil { ... }
//	defer l.Close()
//	rt, err := l.Launch(ctx, exec.Command("./myvm"))
//	var lerr *launcher.LaunchError
//	if errors.As(err, &lerr) { ... } // lerr.Phase says what failed
//	conn := myv1connect.NewMyServiceClient(rt.HTTPClient(), "http://"+rt.Status().Addr, connect.WithGRPC())
//	...
//	// SIGTERM, up to the graceful timeout, then SIGKILL; returns once the VM
//	// is reaped. Its context cuts the grace short: not a signal's context,
//	// which has ended by then and would kill the VM at once.
//	err = rt.Shutdown(context.Background())
//
// What happens to a VM is told as typed events through Hooks, in the style
// of net/http/httptrace; a failed launch returns a *LaunchError whose Phase
// and cause code can test. The log is for people.
//
// A node (a process that runs VMs for long) calls StartSubreaper once,
// before it launches anything, and closes it last: the processes that a
// VM's descendants leave behind come to the node, and the VM's stop ends
// them (docs/RELIABILITY.md, "No survivors"). CloseInheritedFDs, at the
// same moment, keeps the descriptors the node inherited out of its VMs.
//
// The handshake itself is served by package server; the launcher makes one
// RPC of its own, the legacy /vm.VM/Shutdown of rpcchainvm plugins.
// docs/ARCHITECTURE.md describes the launch, the stop and the order of the
// events; docs/PROTOCOL.md the wire.
package launcher
