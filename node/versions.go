package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/vmre/vmre/registry"
)

// The versions of a VM of the plugin directory, as the node knows them.
// A pinned VM's digest is known from its load (the registry seals it); an
// unpinned VM's is not, so that no launch waits for a whole file to be
// read: the node learns it as it copies the VM's bytes into its store,
// which it does
//
//   - in the background, once a version it never kept runs: from the
//     process's executable (the bytes that run, whatever became of the
//     file since), or from the file while its identity proves it the one
//     loaded; the VM's later launches run the copy;
//   - at once, for a file that changed: its digest says whether it is a
//     version that failed before, and the rollout runs the copy;
//   - at once, before a rollout, for a version that runs from its file and
//     was not kept yet: the rollout's revert needs its bytes.
//
// A file whose settled identity the history knows is not read again: it
// holds the version recorded with that identity.

// regKey is a registry VM as reconciling compares it: the registry keeps a
// VM's *VM while its file and pin are unchanged and makes a new one when
// they change.
func regKey(vm *registry.VM) string { return fmt.Sprintf("%s %p %t", vm.File(), vm, vm.Pinned()) }

// digestText is vm's digest in hex, or "" while it is not known (an
// unpinned VM's, until the node has kept its bytes).
func digestText(vm *registry.VM) string {
	if !vm.DigestKnown() {
		return ""
	}
	return vm.Digest().String()
}

// seenOf is what the node records of the version digest of vm.
func seenOf(vm *registry.VM, digest string) seenVersion {
	sv := seenVersion{digest: digest, file: vm.File(), pinned: vm.Pinned()}
	if id, settled := vm.Identity(); settled {
		sv.identity = id
	}
	return sv
}

// seen is what the node records of the version v, whose digest is known.
func (v version) seen() seenVersion {
	src := v.src
	if src == nil {
		src = v.run
	}
	sv := seenOf(src, digestText(v.run))
	sv.pinned = v.run.Pinned()
	return sv
}

// knownDigest is the digest of the registry's vm of the VM name, when the
// node knows it without reading the file: from the registry (a pinned VM,
// or one kept before), or from the history, whose copy of that version the
// store holds, by the file's settled identity.
func (n *Node) knownDigest(name string, vm *registry.VM) (string, bool) {
	if vm.DigestKnown() {
		return vm.Digest().String(), true
	}
	if id, settled := vm.Identity(); settled {
		if rec, ok := n.history.byIdentity(name, id); ok && n.store.has(name, rec.Digest) {
			return rec.Digest, true
		}
	}
	return "", false
}

// digestOf is the digest of the registry's vm of the VM name: known, or
// learnt by keeping a copy of the file.
func (n *Node) digestOf(name string, vm *registry.VM) (string, error) {
	if d, ok := n.knownDigest(name, vm); ok {
		return d, nil
	}
	d, err := n.store.keep(context.Background(), name, vm, 0)
	if err != nil {
		return "", err
	}
	n.keepHistory(name)(n.history.seen(name, seenOf(vm, d)))
	return d, nil
}

// runnable is the version the node runs of the registry's vm: vm itself
// when sealed (a copy of its bytes is kept in the background, for a
// restart or a rollback), else the node's copy of its bytes, made now if
// need be. The version is recorded in the history.
func (n *Node) runnable(name string, vm *registry.VM) (version, error) {
	if vm.Sealed() {
		n.keepHistory(name)(n.history.seen(name, seenOf(vm, vm.Digest().String())))
		n.keepLater(name, vm, 0)
		return version{run: vm, src: vm}, nil
	}
	d, err := n.digestOf(name, vm)
	if err != nil {
		return version{}, err
	}
	if !n.store.has(name, d) {
		if _, err := n.store.keep(context.Background(), name, vm, 0); err != nil {
			return version{}, err
		}
	}
	n.keepHistory(name)(n.history.seen(name, seenOf(vm, d)))
	run, err := n.store.open(name, versionRecord{Digest: d, File: vm.File()}, vm.Pinned())
	if err != nil {
		return version{}, err
	}
	return version{run: run, src: vm}, nil
}

// keepJob is a copy to keep: of the registry's vm of the VM name, from
// process pid (0: from the file).
type keepJob struct {
	name string
	vm   *registry.VM
	pid  int
}

// keepLater queues the copy of vm's bytes, unless the store holds them,
// for the keeper: the actor of Run that keeps copies one at a time, once
// the launches have quieted down, so that they do not compete with them
// for the CPUs. A node without a
// data directory keeps none in the background: its copies would not
// outlive it, and a rollout keeps the version that runs first; the
// registry takes the digest of what runs instead (Registry.TakeDigest).
func (n *Node) keepLater(name string, vm *registry.VM, pid int) {
	if n.store.temp { // a rollout keeps the bytes it needs; the digest informs
		if pid != 0 && !vm.DigestKnown() {
			n.reg.TakeDigest(vm, pid, nil)
		}
		return
	}
	if vm.DigestKnown() && n.store.has(name, vm.Digest().String()) {
		return
	}
	if vm.Sealed() {
		pid = 0 // its process runs the seal, which is read as well
	}
	n.mu.Lock()
	n.keeps = append(n.keeps, keepJob{name: name, vm: vm, pid: pid})
	n.lastKeep = n.now()
	n.mu.Unlock()
	select {
	case n.kickKeep <- struct{}{}:
	default:
	}
}

// keepQuiet is how long the keeper waits after the last copy was queued
// before it copies: a node that starts dozens of VMs queues a copy as each
// runs, and copying them then (reading, hashing and writing 14 MB each)
// took all 64 from running in 153 ms to 629 ms (docs/PERFORMANCE.md, "A
// node of 64 VMs"); once the launches have quieted down, it takes the CPUs
// from none.
const keepQuiet = 100 * time.Millisecond

// awaitQuiet waits until no copy has been queued for keepQuiet, and
// reports whether it did: false when ctx ended first.
func (n *Node) awaitQuiet(ctx context.Context) bool {
	for {
		n.mu.Lock()
		wait := n.lastKeep.Add(keepQuiet).Sub(n.now())
		n.mu.Unlock()
		if wait <= 0 {
			return true
		}
		select {
		case <-n.after(wait):
		case <-ctx.Done():
			return false
		}
	}
}

// keeper keeps the queued copies until ctx ends, which abandons the copy
// under way; each once no copy has been queued for keepQuiet.
func (n *Node) keeper(ctx context.Context) {
	for {
		select {
		case <-n.kickKeep:
			for {
				if !n.awaitQuiet(ctx) {
					return
				}
				n.mu.Lock()
				if len(n.keeps) == 0 {
					n.mu.Unlock()
					break
				}
				j := n.keeps[0]
				n.keeps = n.keeps[1:]
				n.mu.Unlock()
				n.keepNow(ctx, j)
				if ctx.Err() != nil {
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// keepNow keeps a copy, records the version, and moves a VM that runs its
// file to the copy: its later launches run the bytes kept.
func (n *Node) keepNow(ctx context.Context, j keepJob) {
	d, err := n.store.keep(ctx, j.name, j.vm, j.pid)
	switch {
	case errors.Is(err, fs.ErrClosed), ctx.Err() != nil:
		return // a version no launch uses any more, or the node's end
	case err != nil:
		n.log.Warn("cannot keep a copy of the VM's version; it is kept when it changes, or before a rollout", "vm", j.name, "error", err.Error())
		return
	}
	n.keepHistory(j.name)(n.history.seen(j.name, seenOf(j.vm, d)))
	if j.vm.Sealed() {
		return
	}
	n.runFromCopy(j.name, j.vm, d)
}

// runFromCopy moves the VM name, which runs its unpinned registry VM vm
// from its file, to the node's copy of it, of digest d: its later launches
// run the copy. It reports whether the VM runs the copy.
func (n *Node) runFromCopy(name string, vm *registry.VM, d string) bool {
	n.mu.Lock()
	e := n.entries[name]
	runs := e != nil && e.vm.run == vm
	n.mu.Unlock()
	if !runs {
		return false
	}
	run, err := n.store.open(name, versionRecord{Digest: d, File: vm.File()}, vm.Pinned())
	if err != nil {
		n.log.Warn("cannot run the VM from its copy", "vm", name, "error", err.Error())
		return false
	}
	n.mu.Lock()
	runs = e.vm.run == vm
	if runs {
		e.vm = version{run: run, src: vm}
	}
	n.mu.Unlock()
	if !runs {
		run.Close()
		return false
	}
	n.keepHistory(name)(n.history.running(name, seenOf(vm, d)))
	if err := n.sup.Replace(n.spec(name)); err != nil {
		n.log.Warn("cannot run the VM from its copy", "vm", name, "error", err.Error())
	}
	return true
}

// keepCurrent makes sure that the version the VM name runs is kept before
// a rollout, whose revert runs it: a version that runs from its file is
// kept now, from its process (pid) or its file. It reports false when that
// cannot be: a revert would run whatever the file holds.
func (n *Node) keepCurrent(name string, pid int) bool {
	n.mu.Lock()
	e := n.entries[name]
	var cur version
	if e != nil {
		cur = e.vm
	}
	n.mu.Unlock()
	if e == nil || cur.run == nil || cur.kept() {
		return true
	}
	d, err := n.store.keep(context.Background(), name, cur.run, pid)
	if err != nil {
		n.log.Warn("the version the VM runs has no copy: its rollout keeps the new version if it fails (no auto-revert)",
			"vm", name, "error", err.Error())
		return false
	}
	n.keepHistory(name)(n.history.seen(name, seenOf(cur.run, d)))
	if n.runFromCopy(name, cur.run, d) {
		return true
	}
	n.mu.Lock() // the keeper may have moved it meanwhile
	defer n.mu.Unlock()
	return e.vm.kept()
}
