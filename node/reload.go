package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/registry"
)

// Reload reads the plugin directory, the aliases and the pins again and
// reconciles the node with them (see the package doc). It returns once
// the removed VMs are stopped (ctx cuts their graceful stop short). On
// an error (the directory cannot be listed) nothing changes.
func (n *Node) Reload(ctx context.Context) (Report, error) {
	if n.reg == nil {
		return Report{}, fmt.Errorf("%w: the node has no plugin directory to reload", vmre.ErrInvalidConfig)
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	n.mu.Lock()
	running := n.phase == phaseRunning
	n.mu.Unlock()
	if !running {
		return Report{}, ErrNotRunning
	}
	report, err := n.reg.Reload()
	if err != nil {
		return Report{}, err
	}
	return n.reconcile(ctx, report), nil
}

// reloadProto is Reload for the admin service.
func (n *Node) reloadProto(ctx context.Context) (*adminv1.ReloadResponse, error) {
	r, err := n.Reload(ctx)
	if err != nil {
		return nil, err
	}
	out := &adminv1.ReloadResponse{Added: r.Added, Changed: r.Changed, Unchanged: r.Unchanged, Removed: r.Removed}
	for _, p := range r.Failed {
		// A problem may quote any bytes of a file's name or of the pins
		// file; protobuf strings must be valid UTF-8 (docs/NODE.md).
		out.Failed = append(out.Failed, &adminv1.ReloadFailure{Entry: safetext.Valid(p.Entry), Vm: safetext.Valid(p.ID),
			Kind: p.Kind.String(), Error: safetext.Valid(p.Err.Error())})
	}
	return out, nil
}

// version is a registry VM's version, as reconciling compares them: its
// file, its bytes and its pin. The registry keeps a VM's *VM while its
// file and pin are unchanged and makes a new one when they change, so the
// *VM stands for its bytes: an unpinned VM's digest is not known at load
// (registry.VM.DigestKnown), and two versions of a file would have the same
// unknown one.
func version(vm *registry.VM) string {
	return fmt.Sprintf("%s %p %t", vm.File(), vm, vm.Pinned())
}

// digestText is vm's digest in hex, or "" while it is not known (an
// unpinned VM's is taken once it runs).
func digestText(vm *registry.VM) string {
	if !vm.DigestKnown() {
		return ""
	}
	return vm.Digest().String()
}

// reconcile carries out what a load of the plugin directory asks for,
// under reloadMu, and reports it.
func (n *Node) reconcile(ctx context.Context, report registry.Report) Report {
	want := desired{local: map[string]string{}, refused: map[string]bool{}, remotes: map[string]uint{}}
	for _, vm := range n.reg.VMs() {
		want.local[vm.ID()] = version(vm)
	}
	for _, p := range report.Failed {
		if p.ID != "" {
			want.refused[p.ID] = true
		}
	}
	declared := map[string]registry.Remote{}
	for _, r := range report.Remotes {
		want.remotes[r.ID], declared[r.ID] = r.ProtocolVersion, r
	}
	if n.remotes == nil && len(report.Remotes) > 0 {
		n.log.Warn("the plugin directory declares remote VMs, which only a node with an engine for them (Config.Remote) enrolls",
			"remotes", len(report.Remotes))
		want.remotes = map[string]uint{}
	}
	have := current{local: map[string]localState{}, remotes: map[string]uint{}}
	n.mu.Lock()
	for name, e := range n.entries {
		switch {
		case e.fromDir && e.remote != nil:
			have.remotes[name] = e.remote.version
		case e.fromDir:
			have.local[name] = localState{version: version(e.vm), removed: e.removed}
		}
	}
	n.mu.Unlock()

	actions := reconcile(have, want, n.cfg.KeepRemoved)
	var out Report
	done := map[string]bool{}
	var stopping sync.WaitGroup
	for _, a := range actions {
		if a.kind != actRestore {
			done[a.name] = true
		}
		switch a.kind {
		case actRemove:
			out.Removed = append(out.Removed, a.name)
			stopping.Go(func() { n.remove(ctx, a.name) })
		case actRevoke:
			out.Removed = append(out.Removed, a.name)
			n.revoke(ctx, a.name)
		case actKeep:
			out.Removed = append(out.Removed, a.name)
			n.keep(a.name)
		case actRestore:
			n.restore(ctx, a.name)
		case actReplace:
			out.Changed = append(out.Changed, a.name)
			n.replace(a.name)
		case actAdd, actEnroll:
			stopping.Wait() // a name that passes from a file to a declaration is free once stopped
			if n.add(ctx, a, declared[a.name]) {
				out.Added = append(out.Added, a.name)
			}
		}
	}
	stopping.Wait()
	for _, name := range names(want.local) {
		if !done[name] {
			out.Unchanged = append(out.Unchanged, name)
		}
	}
	out.Failed = report.Failed
	n.logReport(out)
	if h := n.cfg.Hooks; h != nil && h.Reload != nil {
		h.Reload(out)
	}
	return out
}

// remove stops the VM name with its graceful timeout and forgets it; its
// version is closed.
func (n *Node) remove(ctx context.Context, name string) {
	n.log.Warn("the VM's file left the plugin directory: stopping it", "vm", name)
	if err := n.forget(ctx, name); err != nil {
		n.log.Error("cannot stop the removed VM", "vm", name, "error", err.Error())
	}
	n.mu.Lock()
	e := n.entries[name]
	delete(n.entries, name)
	delete(n.sandboxes, name)
	n.mu.Unlock()
	if err := n.stops.set(name, false); err != nil {
		n.log.Warn("cannot forget the removed VM's stop in the data directory", "vm", name, "error", err.Error())
	}
	if e != nil {
		n.closeUnused(e.vm)
		n.closeUnused(e.launched)
	}
}

// keep marks the VM name removed and leaves it running.
func (n *Node) keep(name string) {
	n.mu.Lock()
	if e := n.entries[name]; e != nil {
		e.removed = true
	}
	n.mu.Unlock()
	n.log.Warn("the VM's file left the plugin directory; it runs on until stopped (KeepRemoved)", "vm", name)
}

// restore unmarks a removed VM whose file is back.
func (n *Node) restore(_ context.Context, name string) {
	n.mu.Lock()
	if e := n.entries[name]; e != nil {
		e.removed = false
	}
	n.mu.Unlock()
	n.log.Info("the removed VM's file is back in the plugin directory", "vm", name)
}

// replace moves the VM name to the registry's version: its next launch
// runs it; the old version is closed once no launch can use it.
func (n *Node) replace(name string) {
	vm, ok := n.reg.Lookup(name)
	if !ok {
		return
	}
	n.mu.Lock()
	e := n.entries[name]
	var old *registry.VM
	if e != nil {
		old, e.vm = e.vm, vm
	}
	n.mu.Unlock()
	if old == nil {
		return
	}
	n.log.Warn("the VM's file changed: its next launch runs the new version (restart it to run it now)",
		"vm", name, "digest", digestText(vm), "was", digestText(old))
	n.closeUnused(old)
}

// add supervises a new VM of the directory, or enrolls a new remote VM,
// and reports whether it did.
func (n *Node) add(ctx context.Context, a action, decl registry.Remote) bool {
	if a.kind == actEnroll {
		if err := n.remotes.enroll(ctx, decl); err != nil {
			n.log.Error("cannot enroll the remote VM; skipped", "vm", a.name, "error", err.Error())
			return false
		}
		return true
	}
	vm, ok := n.reg.Lookup(a.name)
	if !ok {
		return false
	}
	n.mu.Lock()
	n.entries[a.name] = &entry{name: a.name, fromDir: true, vm: vm}
	n.mu.Unlock()
	if err := n.supervise(a.name); err != nil {
		n.log.Error("cannot supervise the VM", "vm", a.name, "error", err.Error())
		return false
	}
	return true
}

// logReport logs a load of the plugin directory.
func (n *Node) logReport(r Report) {
	for _, p := range r.Failed {
		attrs := []any{"entry", p.Entry, "kind", p.Kind.String(), "error", p.Err.Error()}
		if p.ID != "" {
			attrs = append(attrs, "vm", p.ID)
		}
		n.log.Warn("plugin directory entry refused; skipped", attrs...)
	}
	var failed []string
	for _, p := range r.Failed {
		failed = append(failed, p.Entry)
	}
	n.log.LogAttrs(context.Background(), slog.LevelInfo, "plugin directory loaded",
		slog.Any("added", r.Added), slog.Any("changed", r.Changed), slog.Any("unchanged", r.Unchanged),
		slog.Any("removed", r.Removed), slog.Any("failed", failed))
}
