package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/registry"
)

// Reload reads the plugin directory, the aliases and the pins again and
// reconciles the node with them (see the package doc). It returns once
// the removed VMs are stopped (ctx cuts their graceful stop short); the
// rollouts of changed files go on. On an error (the directory cannot be
// listed) nothing changes.
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
	out := n.reconcile(ctx, report, nil)
	n.loaded(out)
	return out, nil
}

// loaded logs a load of the plugin directory and tells the hook.
func (n *Node) loaded(r Report) {
	n.logReport(r)
	if h := n.cfg.Hooks; h != nil && h.Reload != nil {
		h.Reload(r)
	}
}

// reloadProto is Reload for the admin service.
func (n *Node) reloadProto(ctx context.Context) (*adminv1.ReloadResponse, error) {
	r, err := n.Reload(ctx)
	if err != nil {
		return nil, err
	}
	out := &adminv1.ReloadResponse{Added: r.Added, Changed: r.Changed, Unchanged: r.Unchanged, Removed: r.Removed, KnownBad: r.KnownBad}
	for _, p := range r.Failed {
		// A problem may quote any bytes of a file's name or of the pins
		// file; protobuf strings must be valid UTF-8 (docs/NODE.md).
		out.Failed = append(out.Failed, &adminv1.ReloadFailure{Entry: safetext.Valid(p.Entry), Vm: safetext.Valid(p.ID),
			Kind: p.Kind.String(), Error: safetext.Valid(p.Err.Error())})
	}
	return out, nil
}

// reconcile carries out what a load of the plugin directory asks for,
// under reloadMu, and reports it. With only, it is a follow-up of the
// VMs named there, after their rollouts ended: their changes alone (a
// rollout, a swap, a version known bad), against the directory as the
// last load found it.
func (n *Node) reconcile(ctx context.Context, report registry.Report, only map[string]bool) Report {
	want := desired{local: map[string]versionKey{}, bad: map[string]bool{}, refused: map[string]bool{}, remotes: map[string]uint{}}
	if only == nil {
		n.noteRefused(report)
	}
	maps.Copy(want.refused, n.refused)
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
			have.local[name] = localState{version: e.target().keyOf(), removed: e.removed}
		}
	}
	n.mu.Unlock()
	// A file that changed is read (its copy kept) for its digest: the same
	// bytes, a version that failed before, or one to roll out.
	for _, vm := range n.reg.VMs() {
		name, k := vm.ID(), versionKey{key: regKey(vm)}
		if st, ok := have.local[name]; ok && st.version.key != k.key && (only == nil || only[name]) {
			d, err := n.digestOf(name, vm)
			if err != nil {
				n.log.Warn("cannot read the VM's changed file: it runs on as it is, and the file is read again at the next reload",
					"vm", name, "error", err.Error())
				want.refused[name] = true
			}
			k.digest = d
			if _, bad := n.history.bad(name, d); bad && d != "" {
				want.bad[name] = true
			}
		}
		want.local[name] = k
	}

	actions := reconcile(have, want, n.cfg.KeepRemoved)
	var out Report
	done := map[string]bool{}
	var stopping sync.WaitGroup
	for _, a := range actions {
		if only != nil && (!only[a.name] || a.kind != actSwap && a.kind != actRollout && a.kind != actKnownBad) {
			continue
		}
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
		case actSwap:
			out.Changed = append(out.Changed, a.name)
			n.swap(a.name)
		case actRollout:
			out.Changed = append(out.Changed, a.name)
			n.rollOutFile(a.name)
		case actKnownBad:
			out.KnownBad = append(out.KnownBad, a.name)
			n.knownBad(a.name)
		case actAdd, actEnroll:
			stopping.Wait() // a name that passes from a file to a declaration is free once stopped
			if n.add(ctx, a, declared[a.name]) {
				out.Added = append(out.Added, a.name)
			}
		}
	}
	stopping.Wait()
	if only == nil {
		for _, name := range names(want.local) {
			if !done[name] {
				out.Unchanged = append(out.Unchanged, name)
			}
		}
		out.Failed = report.Failed
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
		n.closeUnused(e.vm.run)
		if e.next != nil {
			n.closeUnused(e.next.run)
		}
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

// swap moves the VM name to the registry's version of the bytes it runs,
// whose file was renamed, touched or pinned: no rollout, the next launch
// runs it. During a rollout it waits for the rollout's end.
func (n *Node) swap(name string) {
	vm, ok := n.reg.Lookup(name)
	if !ok {
		return
	}
	run, err := n.runnable(name, vm)
	if err != nil {
		n.log.Error("cannot move the VM to its file's new name or pin", "vm", name, "error", err.Error())
		return
	}
	n.mu.Lock()
	e := n.entries[name]
	if e == nil || e.rolling != nil {
		n.mu.Unlock()
		n.closeUnused(run.run) // the follow-up of the rollout moves it
		return
	}
	oldReg := e.reg
	e.reg = vm
	var old *registry.VM
	if e.next != nil {
		old, e.next = e.next.run, &run
	} else {
		old, e.vm = e.vm.run, run
	}
	n.mu.Unlock()
	if err := n.sup.Replace(n.spec(name)); err != nil {
		n.log.Warn("cannot move the VM to its file's new name or pin", "vm", name, "error", err.Error())
	}
	n.log.Info("the VM's file was renamed, touched or pinned, its bytes did not change: no rollout", "vm", name,
		"file", vm.File(), "pinned", vm.Pinned())
	n.closeUnused(old)
	n.closeUnused(oldReg)
}

// setReg makes vm the registry's VM of the entry name, and returns the
// one it was.
func (n *Node) setReg(name string, vm *registry.VM) *registry.VM {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.entries[name]
	if e == nil {
		return nil
	}
	old := e.reg
	e.reg = vm
	return old
}

// knownBad logs a changed file whose version failed its rollout before.
func (n *Node) knownBad(name string) {
	vm, ok := n.reg.Lookup(name)
	if !ok {
		return
	}
	n.closeUnused(n.setReg(name, vm))
	d, _ := n.knownDigest(name, vm)
	rec, _ := n.history.bad(name, d)
	n.log.Warn("the VM's file holds a version that failed before: it is not rolled out again until its bytes change, or a rollout forces it",
		"vm", name, "digest", d, "result", rec.Result, "reason", rec.Reason)
}

// add supervises a new VM of the directory, or enrolls a new remote VM,
// and reports whether it did. A VM the node ran before starts at the
// version it ran (its history's), and its file's version, if another and
// not known bad, is rolled out next.
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
	v, follow, err := n.startVersion(a.name, vm)
	if err != nil {
		n.log.Error("cannot run the VM", "vm", a.name, "error", err.Error())
		return false
	}
	n.mu.Lock()
	n.entries[a.name] = &entry{name: a.name, fromDir: true, reg: vm, vm: v}
	n.mu.Unlock()
	if v.run.DigestKnown() {
		n.keepHistory(a.name)(n.history.running(a.name, v.seen()))
	}
	if err := n.supervise(a.name); err != nil {
		n.log.Error("cannot supervise the VM", "vm", a.name, "error", err.Error())
		return false
	}
	if follow {
		n.follow(a.name)
	}
	return true
}

// startVersion is the version the VM name starts at: the one it ran
// before, when its history has one and the file is not known to hold it
// (the follow-up then reads the file and rolls its version out, unless it
// failed before); else its file's version, from the node's copy when it
// has one, or from its file, whose bytes it keeps once they run.
func (n *Node) startVersion(name string, vm *registry.VM) (v version, follow bool, err error) {
	cur, hasCur := n.history.current(name)
	d, known := n.knownDigest(name, vm)
	if hasCur && (!known || d != cur.Digest) && n.store.has(name, cur.Digest) {
		run, err := n.store.open(name, cur, cur.Pinned)
		if err == nil {
			n.log.Info("the VM starts at the version it ran before; its file's version comes next, by a rollout unless it failed before",
				"vm", name, "digest", cur.Digest, "file", d)
			return version{run: run}, true, nil
		}
		n.log.Warn("the VM starts at its file's version: the version it ran before cannot run again", "vm", name,
			"ran", cur.Digest, "error", err.Error())
	}
	if known || vm.Sealed() {
		v, err := n.runnable(name, vm)
		return v, false, err
	}
	return version{run: vm, src: vm}, false, nil
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
		slog.Any("removed", r.Removed), slog.Any("known_bad", r.KnownBad), slog.Any("failed", failed))
}
