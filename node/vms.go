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
	// reg is the registry's VM of the name as last reconciled: the
	// version of its file, and its aliases.
	reg *registry.VM
	// vm is the version the VM runs: what its launches run.
	vm version
	// next is a version waiting for the VM's next start: its file changed
	// while an operator had it stopped.
	next *version
	// rolling is its rollout in progress, or nil.
	rolling *rollingOut
	// shown is the version of the run the VM's state shows (its digest).
	shown string
	// removed: its file left the directory and it is kept running.
	removed bool
}

// version is a version of a VM that the node can run: run is what its
// launches run (a sealed registry VM, the node's copy of its bytes, or,
// until the node has kept them, the registry's unpinned VM itself), and
// src the registry's VM it came from (nil for a version the node runs from
// its copies alone: an earlier one, after a restart or a rollback).
type version struct {
	run, src *registry.VM
}

// keyOf is the version as reconciling compares it with the registry's.
func (v version) keyOf() versionKey {
	k := versionKey{digest: digestText(v.run)}
	if v.src != nil {
		k.key = regKey(v.src)
	} else {
		k.key = "copy " + k.digest
	}
	return k
}

// kept tells whether the version runs bytes that no change to its file
// changes: sealed, or the node's copy.
func (v version) kept() bool { return v.run.Sealed() || v.run != v.src }

// rollingOut is a VM's rollout in progress.
type rollingOut struct {
	to       version
	rollback bool
}

// target is the version the VM runs, is rolling out, or waits to run.
func (e *entry) target() version {
	switch {
	case e.rolling != nil:
		return e.rolling.to
	case e.next != nil:
		return *e.next
	}
	return e.vm
}

// pending is what the entry waits for, or "".
func (e *entry) pending() string {
	if e.next != nil {
		return "changed: rolls out " + short(digestText(e.next.run)) + " at its next start"
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
		out := n.reconcile(context.Background(), n.initial, nil)
		n.initial = registry.Report{}
		n.loaded(out)
	}
}

// supervise adds the VM name, whose entry is made, to the supervisor: it
// launches, unless an operator stopped it before the node restarted.
func (n *Node) supervise(name string) error {
	stopped := n.stops.has(name)
	spec := n.spec(name)
	spec.Stopped = stopped
	err := n.sup.Add(spec)
	if err == nil && stopped {
		n.log.Info("the VM stays stopped: an operator stopped it before the node restarted; a Start runs it", "vm", name)
	}
	return err
}

// spec is the supervisor's Spec of the VM name: its command, or its
// version's.
func (n *Node) spec(name string) supervise.Spec {
	spec := supervise.Spec{Name: name, Policy: n.cfg.Restart}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch e := n.entries[name]; {
	case e == nil:
	case e.command != nil:
		c := e.command
		spec.Command = func() (*exec.Cmd, error) {
			if !n.has(name) {
				return nil, fmt.Errorf("the VM %s left the node", name)
			}
			return n.prepare(exec.Command(c.Path, c.Args...), launchOf{name: name})
		}
	default:
		spec.Command, spec.Version = n.commandOf(name, e.vm.run), digestText(e.vm.run)
	}
	return spec
}

// has tells whether the node has the VM name.
func (n *Node) has(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.entries[name] != nil
}

// commandOf makes the commands of the version v of the VM name.
func (n *Node) commandOf(name string, v *registry.VM) func() (*exec.Cmd, error) {
	return func() (*exec.Cmd, error) {
		if !n.has(name) {
			return nil, fmt.Errorf("the VM %s left the node", name)
		}
		cmd := v.Command()
		if cmd.Err != nil {
			return nil, cmd.Err // a refused pin, a closed version: no launch would change it
		}
		return n.prepare(cmd, launchOf{name: name, version: v})
	}
}

// prepare runs cmd through the sandbox's init step, unless the sandbox is
// off, and records what it launches.
func (n *Node) prepare(cmd *exec.Cmd, of launchOf) (*exec.Cmd, error) {
	if n.cfg.Sandbox == sandbox.Off {
		n.keepSandbox(of.name, &sandbox.Report{Level: sandbox.Off}) // the VM runs with the node's rights
	} else {
		var aliases []string
		n.mu.Lock()
		if e := n.entries[of.name]; e != nil && e.reg != nil {
			aliases = e.reg.Aliases()
		}
		n.mu.Unlock()
		sc, err := n.sandboxed(of.name, aliases, cmd)
		if err != nil {
			return nil, err // a refused policy: no launch would change it either
		}
		cmd, of.sandbox = sc.Cmd, sc
	}
	n.launches.made(cmd, of)
	return cmd, nil
}

// closeUnused closes a version's VM (a sealed copy) when no launch can
// use it any more: it is no VM's version, next version or version rolling
// out, not the registry's, and no command of it waits to start.
func (n *Node) closeUnused(vm *registry.VM) {
	if vm == nil || n.launches.inUse(vm) {
		return
	}
	if v, ok := n.reg.Lookup(vm.ID()); ok && v == vm {
		return
	}
	n.mu.Lock()
	for _, e := range n.entries {
		if e.vm.run == vm || e.next != nil && e.next.run == vm || e.rolling != nil && e.rolling.to.run == vm {
			n.mu.Unlock()
			return
		}
	}
	n.mu.Unlock()
	if err := vm.Close(); err != nil {
		n.log.Warn("cannot close an old version of the VM", "vm", vm.ID(), "digest", digestText(vm), "error", err.Error())
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
		if e.reg != nil && slices.Contains(e.reg.Aliases(), nameOrAlias) {
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
	if e == nil || e.reg == nil {
		return d
	}
	runs := e.vm.run
	if e.rolling != nil && e.shown != "" && e.shown == digestText(e.rolling.to.run) {
		runs = e.rolling.to.run
	}
	d.Aliases, d.Digest, d.Pinned, d.Removed, d.Pending = e.reg.Aliases(), digestText(runs), runs.Pinned(), e.removed, e.pending()
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
// an operator's stop of it. A version that waits for the VM's next start
// is rolled out instead.
func (n *Node) Start(ctx context.Context, name string) (changed bool, err error) {
	if _, ok := n.sup.Get(name); !ok {
		return false, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	if err := n.stops.set(name, false); err != nil {
		return false, fmt.Errorf("forget the stop of %s in the data directory: %w", name, err)
	}
	if started, err := n.startNext(name); started || err != nil {
		return started, err
	}
	return n.sup.Start(ctx, name)
}

// Restart stops the VM name if it runs and launches it again, as
// supervise.Supervisor.Restart does, and forgets an operator's stop of it.
// A version that waits for the VM's next start is rolled out instead.
func (n *Node) Restart(ctx context.Context, name string) error {
	if _, ok := n.sup.Get(name); !ok {
		return fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	if err := n.stops.set(name, false); err != nil {
		return fmt.Errorf("forget the stop of %s in the data directory: %w", name, err)
	}
	if started, err := n.startNext(name); started || err != nil {
		return err
	}
	return n.sup.Restart(ctx, name)
}

// startNext rolls out the version that waits for the VM's next start, if
// any, and reports whether it did.
func (n *Node) startNext(name string) (bool, error) {
	n.mu.Lock()
	e := n.entries[name]
	var next *version
	if e != nil && e.rolling == nil {
		next, e.next = e.next, nil
	}
	n.mu.Unlock()
	if next == nil {
		return false, nil
	}
	if _, err := n.startRollout(name, *next, RolloutOptions{}, false); err != nil {
		n.closeUnused(next.run)
		return false, err
	}
	return true, nil
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
