package node

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// entry is one VM of the node.
type entry struct {
	name string
	// fromDir: a VM of the plugin directory, which reconciling manages;
	// else one of Config.VMs (command set) or a remote VM (remote set).
	fromDir bool
	command *VM
	remote  *remoteVM
	// vm is the version its next launch runs; launched the version of the
	// launch that started last (nil before one did).
	vm, launched *registry.VM
	// removed: its file left the directory and it is kept running.
	removed bool
}

// pending is what the entry waits for, or "".
func (e *entry) pending() string {
	if e.launched != nil && e.launched != e.vm {
		return "changed: runs at next restart"
	}
	return ""
}

// startVMs supervises the VMs of Config.VMs and of the first load of the
// plugin directory.
func (n *Node) startVMs() {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	for i := range n.cfg.VMs {
		vm := &n.cfg.VMs[i]
		n.mu.Lock()
		n.entries[vm.Name] = &entry{name: vm.Name, command: vm}
		n.mu.Unlock()
		if err := n.supervise(vm.Name); err != nil {
			n.log.Error("cannot supervise the VM", "vm", vm.Name, "error", err.Error())
		}
	}
	if n.reg != nil {
		n.reconcile(context.Background(), n.initial)
		n.initial = registry.Report{}
	}
}

// supervise adds the VM name, whose entry is made, to the supervisor: it
// launches, unless an operator stopped it before the node restarted.
func (n *Node) supervise(name string) error {
	stopped := n.stops.has(name)
	err := n.sup.Add(supervise.Spec{Name: name, Policy: n.cfg.Restart, Stopped: stopped,
		Command: func() (*exec.Cmd, error) { return n.command(name) }})
	if err == nil && stopped {
		n.log.Info("the VM stays stopped: an operator stopped it before the node restarted; a Start runs it", "vm", name)
	}
	return err
}

// command makes the command of the VM name's next launch.
func (n *Node) command(name string) (*exec.Cmd, error) {
	n.mu.Lock()
	e := n.entries[name]
	var of launchOf
	var cmd *exec.Cmd
	switch {
	case e == nil:
		n.mu.Unlock()
		return nil, fmt.Errorf("the VM %s left the node", name)
	case e.command != nil:
		cmd, of = exec.Command(e.command.Path, e.command.Args...), launchOf{name: name}
	default:
		cmd, of = e.vm.Command(), launchOf{name: name, version: e.vm}
	}
	n.mu.Unlock()
	if cmd.Err != nil && of.version != nil {
		return nil, cmd.Err // a refused pin, a closed version: no launch would change it
	}
	if n.cfg.Sandbox == sandbox.Off {
		n.keepSandbox(name, &sandbox.Report{Level: sandbox.Off}) // the VM runs with the node's rights
	} else {
		var aliases []string
		if of.version != nil {
			aliases = of.version.Aliases()
		}
		sc, err := n.sandboxed(name, aliases, cmd)
		if err != nil {
			return nil, err // a refused policy: no launch would change it either
		}
		cmd, of.sandbox = sc.Cmd, sc
	}
	n.launches.made(cmd, of)
	return cmd, nil
}

// launched records that a launch of of's version started.
func (n *Node) launched(of launchOf) {
	if of.version == nil {
		return
	}
	n.mu.Lock()
	var prev *registry.VM
	if e := n.entries[of.name]; e != nil {
		prev, e.launched = e.launched, of.version
	}
	n.mu.Unlock()
	n.closeUnused(prev)
}

// takeDigest has the registry take version's digest, unknown for an
// unpinned VM until it runs, from pid, a process that runs it: in the
// background, once per version (docs/NODE.md).
func (n *Node) takeDigest(version *registry.VM, pid int) {
	if n.reg == nil || version.DigestKnown() {
		return
	}
	n.reg.TakeDigest(version, pid, func(_ registry.Digest, err error) {
		if err != nil {
			n.log.Debug("the VM's digest is not known", "vm", version.ID(), "pid", pid, "error", err.Error())
		}
	})
}

// closeUnused closes version's sealed copy when no launch can use it any
// more: it is no VM's next version, not the registry's, and no command of
// it waits to start.
func (n *Node) closeUnused(version *registry.VM) {
	if version == nil || n.launches.inUse(version) {
		return
	}
	if v, ok := n.reg.Lookup(version.ID()); ok && v == version {
		return
	}
	n.mu.Lock()
	for _, e := range n.entries {
		if e.vm == version {
			n.mu.Unlock()
			return
		}
	}
	n.mu.Unlock()
	if err := version.Close(); err != nil {
		n.log.Warn("cannot close an old version of the VM", "vm", version.ID(), "digest", digestText(version), "error", err.Error())
	}
}

// resolve turns a name or an alias into the name of a VM of the node: a
// removed VM kept running answers to its aliases too.
func (n *Node) resolve(nameOrAlias string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.entries[nameOrAlias]; ok {
		return nameOrAlias, true
	}
	for name, e := range n.entries {
		if e.vm != nil && slices.Contains(e.vm.Aliases(), nameOrAlias) {
			return name, true
		}
	}
	return "", false
}

// describe is what the node knows of a VM beyond its supervision.
func (n *Node) describe(name string) admin.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := admin.Description{Sandbox: sandboxView(n.sandboxes[name])}
	e := n.entries[name]
	if e == nil || e.vm == nil {
		return d
	}
	runs := e.vm
	if e.launched != nil {
		runs = e.launched
	}
	d.Aliases, d.Digest, d.Pinned, d.Removed, d.Pending = e.vm.Aliases(), digestText(runs), runs.Pinned(), e.removed, e.pending()
	return d
}

// Stop stops the VM name as an operator does (the admin service's StopVM,
// vmre stop): its pending restart is cancelled, and it stays stopped,
// across a restart of the node too, until Start or Restart. ctx cuts its
// graceful stop short.
func (n *Node) Stop(ctx context.Context, name string) (changed bool, err error) {
	if _, ok := n.sup.Get(name); !ok {
		return false, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	if err := n.stops.set(name, true); err != nil { // the intent first: a crash keeps it
		return false, fmt.Errorf("keep the stop of %s in the data directory: %w", name, err)
	}
	return n.sup.Stop(ctx, name)
}

// Start launches the stopped, exited or failed VM name, or at once one
// that waits in a backoff, as supervise.Supervisor.Start does, and forgets
// an operator's stop of it.
func (n *Node) Start(ctx context.Context, name string) (changed bool, err error) {
	if _, ok := n.sup.Get(name); !ok {
		return false, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	if err := n.stops.set(name, false); err != nil {
		return false, fmt.Errorf("forget the stop of %s in the data directory: %w", name, err)
	}
	return n.sup.Start(ctx, name)
}

// Restart stops the VM name if it runs and launches it again, as
// supervise.Supervisor.Restart does, and forgets an operator's stop of it.
func (n *Node) Restart(ctx context.Context, name string) error {
	if _, ok := n.sup.Get(name); !ok {
		return fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	if err := n.stops.set(name, false); err != nil {
		return fmt.Errorf("forget the stop of %s in the data directory: %w", name, err)
	}
	return n.sup.Restart(ctx, name)
}

// List returns the supervisor's state of every VM.
func (n *Node) List() []supervise.VM { return n.sup.List() }

// operator is the admin service's supervisor: the node, whose stops are
// kept.
type operator struct{ n *Node }

func (o operator) List() []supervise.VM                 { return o.n.sup.List() }
func (o operator) Get(name string) (supervise.VM, bool) { return o.n.sup.Get(name) }
func (o operator) Stop(ctx context.Context, name string) (bool, error) {
	return o.n.Stop(ctx, name)
}
func (o operator) Start(ctx context.Context, name string) (bool, error) {
	return o.n.Start(ctx, name)
}
func (o operator) Restart(ctx context.Context, name string) error { return o.n.Restart(ctx, name) }

// forget stops the VM name (its graceful timeout, which ctx cuts short)
// and takes it off the supervisor: a VM of that name may be added again.
func (n *Node) forget(ctx context.Context, name string) error {
	err := n.sup.Remove(ctx, name)
	if errors.Is(err, supervise.ErrUnknownVM) {
		return nil
	}
	return err
}
