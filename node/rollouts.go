package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/supervise"
)

// Errors of rollouts and rollbacks.
var (
	// ErrNoVersion: the VM has no such version, or none to go back to.
	ErrNoVersion = errors.New("no such version")
	// ErrKnownBad: the version failed its rollout before (KnownBadError).
	ErrKnownBad = errors.New("the version failed before")
	// ErrNotPinned: the pins file does not pin the version
	// (NotPinnedError).
	ErrNotPinned = errors.New("the version is not pinned")
)

// KnownBadError refuses a version that failed its rollout before, or that
// an operator rolled back from; RolloutOptions.Force rolls it out all the
// same. errors.Is(err, ErrKnownBad) is true.
type KnownBadError struct {
	VM, Digest string
	// Result and Reason are the version's in the VM's history.
	Result, Reason string
}

func (e *KnownBadError) Error() string {
	what := e.Result
	if e.Reason != "" {
		what += ": " + e.Reason
	}
	return fmt.Sprintf("version %s of VM %s was %s; it is not rolled out again unless forced", short(e.Digest), e.VM, what)
}

func (e *KnownBadError) Unwrap() error { return ErrKnownBad }

// NotPinnedError refuses a rollback to a version the pins file does not
// pin; RolloutOptions.Force rolls back all the same, the version then runs
// unpinned. errors.Is(err, ErrNotPinned) is true.
type NotPinnedError struct {
	VM, File, Digest string
	// Pin is the digest the pins file gives File, or "" for none.
	Pin string
}

func (e *NotPinnedError) Error() string {
	pin := "gives it no pin"
	if e.Pin != "" {
		pin = "pins it to " + short(e.Pin)
	}
	return fmt.Sprintf("version %s of VM %s is not in the pins file, which %s: pin it (with its file), or force the rollback",
		short(e.Digest), e.VM, pin)
}

func (e *NotPinnedError) Unwrap() error { return ErrNotPinned }

// RolloutOptions are an operator's choices for one rollout or rollback.
// Zero values take the node's (Config.Rollout).
type RolloutOptions struct {
	// Force rolls out a version that failed before, and rolls back to a
	// version that the pins file does not pin.
	Force bool
	// Strategy, MinHealthy, HealthyDeadline and NoAutoRevert are as in
	// RolloutConfig.
	Strategy                    supervise.Strategy
	MinHealthy, HealthyDeadline time.Duration
	NoAutoRevert                bool
}

// RolloutResult is what an operator's Rollout or Rollback did.
type RolloutResult struct {
	// ID is the rollout's (see supervise.RolloutStatus), or 0 when there
	// was nothing to roll out.
	ID uint64
	// From and To are the digests of the version before and of the new
	// one.
	From, To string
	// Message says what was done, in a sentence.
	Message string
}

// Version is a version of a VM, as its history holds it.
type Version struct {
	// Digest is the SHA-256 of its bytes; File its file's name in the
	// plugin directory, and Pinned whether a pin matched.
	Digest, File string
	Pinned       bool
	// FirstSeen is when the node first found it, Started when it last
	// became the VM's version, Since when its result last changed.
	FirstSeen, Started, Since time.Time
	// Result is ResultPending, ResultRollingOut, ResultRunning,
	// ResultSuperseded, ResultRolledBack, ResultFailed or
	// ResultInterrupted; Reason says why it failed or was interrupted.
	Result, Reason string
	// Kept: the node keeps its bytes, so that a rollback can run it.
	Kept bool
}

// Summary is the version's result in words, such as "rolled back: exit
// code 1 after 4ms, before its handshake".
func (v Version) Summary() string {
	if v.Reason == "" {
		return v.Result
	}
	return v.Result + ": " + v.Reason
}

// Rollout reads the plugin directory again and rolls out the new version
// of the file of the VM name, which must be of the plugin directory; the
// other VMs' changes wait for the next Reload. It returns once the
// rollout has begun (WaitRollout waits for its end): the new version must
// complete its handshake, answer its health probe and stay up for its
// min-healthy time within its deadline, or the VM goes back to the
// version it ran. A VM an operator stopped is started by it. A version
// that failed its rollout before is refused with a *KnownBadError unless
// opts.Force; a VM whose file holds the version it runs has nothing to
// roll out (ID 0).
func (n *Node) Rollout(ctx context.Context, name string, opts RolloutOptions) (RolloutResult, error) {
	unlock, err := n.lockForRollout(name)
	if err != nil {
		return RolloutResult{}, err
	}
	defer unlock()
	report, err := n.reg.Reload()
	if err != nil {
		return RolloutResult{}, err
	}
	n.noteRefused(report)
	for _, p := range report.Failed {
		if p.ID == name {
			return RolloutResult{}, fmt.Errorf("the file of VM %s is refused: %w", name, p.Err)
		}
	}
	vm, ok := n.reg.Lookup(name)
	if !ok || vm.ID() != name {
		return RolloutResult{}, fmt.Errorf("%w: the file of VM %s left the plugin directory", ErrNoVersion, name)
	}
	n.closeUnused(n.setReg(name, vm))
	n.mu.Lock()
	e := n.entries[name]
	from, target, next := digestText(e.vm.run), e.target().keyOf(), e.next
	n.mu.Unlock()
	if regKey(vm) == target.key && next == nil {
		return RolloutResult{From: from, To: from,
			Message: fmt.Sprintf("%s runs its file's version %s already: nothing to roll out", name, short(from))}, nil
	}
	d, err := n.digestOf(name, vm)
	if err != nil {
		return RolloutResult{}, err
	}
	if d == target.digest && next == nil {
		n.swap(name)
		return RolloutResult{From: from, To: d,
			Message: fmt.Sprintf("%s's file was renamed, touched or pinned, its bytes did not change: nothing to roll out", name)}, nil
	}
	if rec, bad := n.history.bad(name, d); bad && !opts.Force {
		return RolloutResult{}, &KnownBadError{VM: name, Digest: d, Result: rec.Result, Reason: rec.Reason}
	}
	to, err := n.runnable(name, vm)
	if err != nil {
		return RolloutResult{}, err
	}
	return n.operatorRollout(name, to, opts, false)
}

// Rollback rolls the VM name out to an earlier version of its history:
// the one before the version it runs ("" digest), or the one whose digest
// starts with digest (at least 4 digits). It returns once the rollout has
// begun, as Rollout does. A version that failed before is refused with a
// *KnownBadError, and with pins one that the pins file does not pin with
// a *NotPinnedError, unless opts.Force. The version rolled back from is
// not rolled out again at a reload until its file's bytes change.
func (n *Node) Rollback(ctx context.Context, name, digest string, opts RolloutOptions) (RolloutResult, error) {
	unlock, err := n.lockForRollout(name)
	if err != nil {
		return RolloutResult{}, err
	}
	defer unlock()
	rec, err := n.history.lookup(name, digest)
	if err != nil {
		return RolloutResult{}, err
	}
	n.mu.Lock()
	from := digestText(n.entries[name].vm.run)
	n.mu.Unlock()
	if rec.Digest == from {
		return RolloutResult{From: from, To: from, Message: fmt.Sprintf("%s runs version %s already: nothing to roll back", name, short(from))}, nil
	}
	if rec.bad() && !opts.Force {
		return RolloutResult{}, &KnownBadError{VM: name, Digest: rec.Digest, Result: rec.Result, Reason: rec.Reason}
	}
	pinned := false
	if n.cfg.Pins != "" {
		pin, ok := n.reg.Pin(rec.File)
		pinned = ok && pin.String() == rec.Digest
		if !pinned && !opts.Force {
			nerr := &NotPinnedError{VM: name, File: rec.File, Digest: rec.Digest}
			if ok {
				nerr.Pin = pin.String()
			}
			return RolloutResult{}, nerr
		}
	}
	var to version
	if vm, ok := n.reg.Lookup(name); ok && vm.Sealed() && vm.Digest().String() == rec.Digest && pinned {
		to = version{run: vm, src: vm}
	} else {
		run, err := n.store.open(name, rec, pinned)
		if err != nil {
			return RolloutResult{}, err
		}
		to = version{run: run}
	}
	return n.operatorRollout(name, to, opts, true)
}

// lockForRollout takes reloadMu for an operator's rollout of the VM name,
// once it is known to be a VM of the plugin directory, with no rollout in
// progress, of a running node.
func (n *Node) lockForRollout(name string) (unlock func(), err error) {
	if n.reg == nil {
		return nil, fmt.Errorf("%w: the node has no plugin directory, whose VMs have versions", vmre.ErrInvalidConfig)
	}
	n.reloadMu.Lock()
	n.mu.Lock()
	e, running := n.entries[name], n.phase == phaseRunning
	rolling := e != nil && e.rolling != nil
	n.mu.Unlock()
	switch {
	case !running:
		err = ErrNotRunning
	case e == nil:
		err = fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	case !e.fromDir || e.remote != nil:
		err = fmt.Errorf("%w: %s is not a VM of the plugin directory: it has no versions", vmre.ErrInvalidConfig, name)
	case rolling:
		err = fmt.Errorf("%w: %s rolls out a version already; wait for its end", supervise.ErrRolloutInProgress, name)
	}
	if err != nil {
		n.reloadMu.Unlock()
		return nil, err
	}
	return n.reloadMu.Unlock, nil
}

// operatorRollout starts an operator's rollout of to: it forgets an
// operator's stop of the VM, and a version that waited for its start.
func (n *Node) operatorRollout(name string, to version, opts RolloutOptions, rollback bool) (RolloutResult, error) {
	if err := n.stops.set(name, false); err != nil {
		n.closeUnused(to.run)
		return RolloutResult{}, fmt.Errorf("forget the stop of %s in the data directory: %w", name, err)
	}
	n.mu.Lock()
	e := n.entries[name]
	next := e.next
	e.next = nil
	n.mu.Unlock()
	if next != nil {
		n.closeUnused(next.run)
	}
	id, err := n.startRollout(name, to, opts, rollback)
	if err != nil {
		n.closeUnused(to.run)
		return RolloutResult{}, err
	}
	n.mu.Lock()
	from := digestText(e.vm.run)
	n.mu.Unlock()
	what := "rolling out"
	if rollback {
		what = "rolling back"
	}
	toDigest := digestText(to.run)
	return RolloutResult{ID: id, From: from, To: toDigest, Message: fmt.Sprintf("%s %s from %s to %s", what, name, short(from), short(toDigest))}, nil
}

// WaitRollout waits until the rollout id of the VM name has ended, and
// returns how it ended.
func (n *Node) WaitRollout(ctx context.Context, name string, id uint64) (supervise.RolloutStatus, error) {
	ch := make(chan supervise.RolloutStatus, 8)
	n.mu.Lock()
	if r, ok := n.ended[name]; ok && r.ID == id {
		n.mu.Unlock()
		return r, nil
	}
	n.waiters[name] = append(n.waiters[name], ch)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.waiters[name] = slices.DeleteFunc(n.waiters[name], func(c chan supervise.RolloutStatus) bool { return c == ch })
		n.mu.Unlock()
	}()
	if !n.has(name) {
		return supervise.RolloutStatus{}, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	for {
		select {
		case r := <-ch:
			if r.ID == id {
				return r, nil
			}
		case <-ctx.Done():
			return supervise.RolloutStatus{}, ctx.Err()
		}
	}
}

// History returns the versions of the VM name, newest first.
func (n *Node) History(name string) ([]Version, error) {
	if !n.has(name) {
		return nil, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	}
	var out []Version
	for _, v := range n.history.list(name) {
		out = append(out, Version{Digest: v.Digest, File: v.File, Pinned: v.Pinned, FirstSeen: v.FirstSeen, Started: v.Started,
			Since: v.Since, Result: v.Result, Reason: v.Reason, Kept: n.store.has(name, v.Digest)})
	}
	return out, nil
}

// keepHistory returns what takes a change of the VM name's history: it
// logs a failure to write it, and drops the copies of the versions it
// dropped.
func (n *Node) keepHistory(name string) func(dropped []string, err error) {
	return func(dropped []string, err error) {
		if err != nil {
			n.log.Error("cannot keep the VM's versions in the data directory", "vm", name, "error", err.Error())
		}
		for _, d := range dropped {
			if err := n.store.drop(name, d); err != nil {
				n.log.Warn("cannot remove the copy of an old version", "vm", name, "digest", d, "error", err.Error())
			}
		}
	}
}

// rollOutFile rolls out the registry's version of the VM name, whose file
// changed: at once, or at its next start when an operator stopped it, or
// once the rollout in progress ends.
func (n *Node) rollOutFile(name string) {
	vm, ok := n.reg.Lookup(name)
	if !ok {
		return
	}
	n.closeUnused(n.setReg(name, vm))
	n.mu.Lock()
	e := n.entries[name]
	rolling := e == nil || e.rolling != nil
	n.mu.Unlock()
	if rolling {
		n.log.Info("the VM's file changed during its rollout: its new version rolls out once that ends", "vm", name)
		return
	}
	to, err := n.runnable(name, vm)
	if err != nil {
		n.log.Error("cannot roll out the VM's new version", "vm", name, "error", err.Error())
		return
	}
	if n.stops.has(name) {
		n.mu.Lock()
		old := e.next
		e.next = &to
		n.mu.Unlock()
		if old != nil {
			n.closeUnused(old.run)
		}
		n.log.Warn("the VM's file changed while it is stopped: its start rolls the new version out", "vm", name,
			"digest", digestText(to.run))
		return
	}
	if _, err := n.startRollout(name, to, RolloutOptions{}, false); err != nil {
		n.closeUnused(to.run)
		n.log.Error("cannot roll out the VM's new version", "vm", name, "error", err.Error())
	}
}

// startRollout starts the rollout of the version to of the VM name. The
// version the VM runs is kept first: its revert runs it.
func (n *Node) startRollout(name string, to version, opts RolloutOptions, rollback bool) (uint64, error) {
	pid := 0
	if vm, ok := n.sup.Get(name); ok && vm.State == supervise.StateRunning {
		pid = vm.Pid
	}
	if !n.keepCurrent(name, pid) {
		opts.NoAutoRevert = true
	}
	r := n.rolloutOf(name, to.run, opts)
	n.mu.Lock()
	e := n.entries[name]
	switch {
	case e == nil:
		n.mu.Unlock()
		return 0, fmt.Errorf("%w %q", supervise.ErrUnknownVM, name)
	case e.rolling != nil:
		n.mu.Unlock()
		return 0, fmt.Errorf("%w: %s rolls out a version already", supervise.ErrRolloutInProgress, name)
	}
	ro := &rollingOut{to: to, rollback: rollback}
	e.rolling = ro
	n.mu.Unlock()
	id, err := n.sup.Rollout(name, r)
	if err != nil {
		n.mu.Lock()
		if e.rolling == ro {
			e.rolling = nil
		}
		n.mu.Unlock()
		return 0, err
	}
	return id, nil
}

// rolloutOf is the supervisor's rollout of the version to of the VM name.
func (n *Node) rolloutOf(name string, to *registry.VM, opts RolloutOptions) supervise.Rollout {
	c := n.cfg.Rollout
	r := supervise.Rollout{
		Version: to.Digest().String(), Command: n.commandOf(name, to),
		Strategy: opts.Strategy, MinHealthy: opts.MinHealthy, HealthyDeadline: opts.HealthyDeadline,
		NoAutoRevert: opts.NoAutoRevert || c.NoAutoRevert,
	}
	if r.Strategy == 0 {
		r.Strategy = c.Strategy
		n.mu.Lock()
		if e := n.entries[name]; e != nil && e.reg != nil {
			for _, s := range c.StartFirst {
				if s == name || slices.Contains(e.reg.Aliases(), s) {
					r.Strategy = supervise.StartFirst
				}
			}
		}
		n.mu.Unlock()
	}
	if r.MinHealthy == 0 {
		r.MinHealthy = c.MinHealthy
	}
	if r.HealthyDeadline == 0 {
		r.HealthyDeadline = c.HealthyDeadline
	}
	return r
}

// rolloutStarted records a rollout that began in the VM's history.
func (n *Node) rolloutStarted(ev supervise.RolloutEvent) {
	n.mu.Lock()
	var ro *rollingOut
	if e := n.entries[ev.VM]; e != nil {
		ro = e.rolling
	}
	n.mu.Unlock()
	if ro != nil {
		n.keepHistory(ev.VM)(n.history.started(ev.VM, ro.to.seen(), ev.Rollout.From, ro.rollback))
	}
	if h := n.cfg.Hooks; h != nil && h.RolloutStarted != nil {
		h.RolloutStarted(ev)
	}
}

// rolloutEnded records how a rollout ended: the VM's version, its
// history and metrics, then tells the hook (of the node's Hooks) and the
// waiters, and has the VM reconciled again: its file may have changed
// meanwhile.
func (n *Node) rolloutEnded(ev supervise.RolloutEvent, hook func(*Hooks) func(supervise.RolloutEvent)) {
	n.mu.Lock()
	var prev *registry.VM
	if e := n.entries[ev.VM]; e != nil && e.rolling != nil {
		ro := e.rolling
		e.rolling = nil
		switch ev.Rollout.Phase {
		case supervise.RolloutSucceeded, supervise.RolloutFailed:
			prev, e.vm = e.vm.run, ro.to
		default:
			prev = ro.to.run
		}
	}
	waiters := slices.Clone(n.waiters[ev.VM])
	n.ended[ev.VM] = ev.Rollout
	n.mu.Unlock()
	reason := ""
	if ev.Rollout.Err != nil {
		reason = ev.Rollout.Err.Error()
	}
	n.keepHistory(ev.VM)(n.history.ended(ev.VM, ev.Rollout.Phase, ev.Rollout.To, reason))
	n.metrics.RolloutEnded(ev.VM, rolloutResult(ev.Rollout.Phase))
	n.closeUnused(prev)
	if h := n.cfg.Hooks; h != nil {
		if f := hook(h); f != nil {
			f(ev)
		}
	}
	for _, w := range waiters {
		select {
		case w <- ev.Rollout:
		default:
		}
	}
	n.follow(ev.VM)
}

// rolloutResult is a rollout's result in vmre_rollouts_total.
func rolloutResult(p supervise.RolloutPhase) string {
	switch p {
	case supervise.RolloutSucceeded:
		return "succeeded"
	case supervise.RolloutReverted:
		return "reverted"
	case supervise.RolloutFailed:
		return "failed"
	}
	return "interrupted"
}

// rolloutHooks are the supervisor's rollout hooks of the node.
func (n *Node) rolloutHooks(h *supervise.Hooks) {
	h.RolloutStarted = n.rolloutStarted
	h.RolloutHealthy = func(ev supervise.RolloutEvent) {
		n.rolloutEnded(ev, func(h *Hooks) func(supervise.RolloutEvent) { return h.RolloutHealthy })
	}
	h.RolloutReverted = func(ev supervise.RolloutEvent) {
		n.rolloutEnded(ev, func(h *Hooks) func(supervise.RolloutEvent) { return h.RolloutReverted })
	}
	h.RolloutFailed = func(ev supervise.RolloutEvent) {
		n.rolloutEnded(ev, func(h *Hooks) func(supervise.RolloutEvent) { return h.RolloutFailed })
	}
}

// follow has the VM name reconciled again by the follow-up actor.
func (n *Node) follow(name string) {
	n.mu.Lock()
	n.dirty[name] = true
	n.mu.Unlock()
	select {
	case n.kickFollow <- struct{}{}:
	default:
	}
}

// followUps reconciles the VMs whose rollout ended, or that started at
// another version than their file's, until done closes: a file that
// changed during a rollout rolls out next.
func (n *Node) followUps(done <-chan struct{}) {
	for {
		select {
		case <-n.kickFollow:
			n.followUp()
		case <-done:
			return
		}
	}
}

func (n *Node) followUp() {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	n.mu.Lock()
	only, running := n.dirty, n.phase == phaseRunning
	n.dirty = map[string]bool{}
	n.mu.Unlock()
	if !running || n.reg == nil || len(only) == 0 {
		return
	}
	out := n.reconcile(context.Background(), registry.Report{}, only)
	if len(out.Changed)+len(out.KnownBad) > 0 {
		n.log.Info("VMs reconciled after their rollouts", "changed", out.Changed, "known_bad", out.KnownBad)
	}
}

// noteRefused keeps the VMs whose entry a load of the plugin directory
// refused: they run on as they are.
func (n *Node) noteRefused(report registry.Report) {
	n.refused = map[string]bool{}
	for _, p := range report.Failed {
		if p.ID != "" {
			n.refused[p.ID] = true
		}
	}
}
