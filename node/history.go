package node

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmre/vmre/internal/atomicfile"
	"github.com/vmre/vmre/supervise"
)

// historyFile is the file of the data directory that holds each VM's
// versions: the one it runs, a rollout in progress, and the results of
// the last ones, so that a restart of the node does not forget a version
// that failed.
const historyFile = "versions.json"

// DefaultKeepVersions is how many versions of each VM the node keeps in
// its history, with a copy of their bytes (RolloutConfig.Keep).
const DefaultKeepVersions = 5

// The results of a version (Version.Result).
const (
	// ResultPending: seen in the plugin directory, never run.
	ResultPending = "pending"
	// ResultRollingOut: its rollout is in progress.
	ResultRollingOut = "rolling out"
	// ResultRunning: the VM's version.
	ResultRunning = "running"
	// ResultSuperseded: a later version took its place.
	ResultSuperseded = "superseded"
	// ResultRolledBack: it failed its rollout and the VM went back to the
	// version before, or an operator's rollback left it. It is not rolled
	// out again unless its bytes change or a rollout forces it.
	ResultRolledBack = "rolled back"
	// ResultFailed: it failed its rollout and stays the VM's version (no
	// auto-revert).
	ResultFailed = "failed"
	// ResultInterrupted: its rollout was interrupted (an operator's stop,
	// the node's end): it may be rolled out again.
	ResultInterrupted = "interrupted"
)

// versionRecord is one version of a VM, as the history file holds it.
type versionRecord struct {
	Digest string `json:"digest"`
	File   string `json:"file"`
	Pinned bool   `json:"pinned"`
	// Identity is the settled identity of its file when the node kept its
	// bytes (registry.VM.Identity): a file found later with the same one
	// holds this version, unread.
	Identity  string    `json:"identity,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	// Started is when it last became the VM's version.
	Started time.Time `json:"started,omitzero"`
	Result  string    `json:"result"`
	Reason  string    `json:"reason,omitempty"`
	// Since is when its result last changed.
	Since time.Time `json:"since"`
}

// seenVersion is what the node knows of a version it found: its digest,
// its file, its pin and its file's settled identity ("" for none).
type seenVersion struct {
	digest, file, identity string
	pinned                 bool
}

// bad tells whether the version failed and is not to be rolled out again
// unless forced.
func (v versionRecord) bad() bool { return v.Result == ResultRolledBack || v.Result == ResultFailed }

// rolloutRecord is a rollout in progress.
type rolloutRecord struct {
	From     string    `json:"from"`
	To       string    `json:"to"`
	Started  time.Time `json:"started"`
	Rollback bool      `json:"rollback,omitempty"`
}

// vmHistory is one VM's versions.
type vmHistory struct {
	// Current is the digest of the version the VM runs.
	Current string         `json:"current,omitempty"`
	Rollout *rolloutRecord `json:"rollout,omitempty"`
	// Versions are newest first (by Since).
	Versions []versionRecord `json:"versions"`
}

// historyJSON is the history file.
type historyJSON struct {
	VMs map[string]*vmHistory `json:"vms"`
}

// history is the versions of the node's VMs, kept in the data directory
// when the node has one. Each change is written, whole, before the method
// that made it returns.
type history struct {
	path string // "" without a data directory
	keep int
	now  func() time.Time

	mu  sync.Mutex
	vms map[string]*vmHistory
}

// loadHistory reads the history of dataDir, or starts an empty one. A
// rollout that was in progress when the node stopped is recorded as
// interrupted: the VM runs its version from before.
func loadHistory(dataDir string, keep int) (*history, error) {
	h := &history{keep: cmp.Or(keep, DefaultKeepVersions), now: time.Now, vms: map[string]*vmHistory{}}
	if dataDir == "" {
		return h, nil
	}
	h.path = filepath.Join(dataDir, historyFile)
	b, err := os.ReadFile(h.path)
	switch {
	case os.IsNotExist(err):
		return h, nil
	case err != nil:
		return nil, fmt.Errorf("the versions of the VMs: %w", err)
	}
	var j historyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("the versions of the VMs %s are not the node's JSON: %w; fix it, or remove it to forget the versions (and which failed)", h.path, err)
	}
	interrupted := false
	for name, vh := range j.VMs {
		if vh == nil {
			continue
		}
		h.vms[name] = vh
		if vh.Rollout != nil {
			h.endLocked(name, supervise.RolloutInterrupted, vh.Rollout.To, "the node stopped during its rollout")
			interrupted = true
		}
	}
	if interrupted {
		if err := h.writeLocked(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// vm returns the history of name, made when missing.
func (h *history) vm(name string) *vmHistory {
	vh := h.vms[name]
	if vh == nil {
		vh = &vmHistory{}
		h.vms[name] = vh
	}
	return vh
}

// find returns the record of digest in vh, or nil.
func (vh *vmHistory) find(digest string) *versionRecord {
	for i := range vh.Versions {
		if vh.Versions[i].Digest == digest {
			return &vh.Versions[i]
		}
	}
	return nil
}

// record returns the record of the version sv in name's history, made
// (pending) when missing; its file, pin and identity are sv's.
func (h *history) record(name string, sv seenVersion) *versionRecord {
	vh := h.vm(name)
	v := vh.find(sv.digest)
	if v == nil {
		now := h.now()
		vh.Versions = append(vh.Versions, versionRecord{Digest: sv.digest, FirstSeen: now, Result: ResultPending, Since: now})
		v = &vh.Versions[len(vh.Versions)-1]
	}
	v.File, v.Pinned = sv.file, sv.pinned
	if sv.identity != "" {
		v.Identity = sv.identity
	}
	return v
}

// set gives v a result.
func (h *history) set(v *versionRecord, result, reason string) {
	v.Result, v.Reason, v.Since = result, reason, h.now()
}

// seen records the version sv of name, pending when it is new, and
// returns the digests of the versions it drops to keep the last ones.
func (h *history) seen(name string, sv seenVersion) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vh := h.vms[name]; vh != nil {
		if v := vh.find(sv.digest); v != nil && v.File == sv.file && v.Pinned == sv.pinned && (sv.identity == "" || v.Identity == sv.identity) {
			return nil, nil
		}
	}
	h.record(name, sv)
	return h.commitLocked(name)
}

// byIdentity returns the version of name whose file had the settled
// identity id.
func (h *history) byIdentity(name, id string) (versionRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vh := h.vms[name]; vh != nil && id != "" {
		for _, v := range vh.Versions {
			if v.Identity == id {
				return v, true
			}
		}
	}
	return versionRecord{}, false
}

// running records that name runs the version sv, as the node starts it.
func (h *history) running(name string, sv seenVersion) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vh := h.vm(name)
	v := h.record(name, sv)
	if vh.Current == v.Digest && v.Result == ResultRunning {
		return nil, nil
	}
	if prev := vh.find(vh.Current); prev != nil && prev != v && prev.Result == ResultRunning {
		h.set(prev, ResultSuperseded, "")
	}
	vh.Current = v.Digest
	h.set(v, ResultRunning, "")
	v.Started = v.Since
	return h.commitLocked(name)
}

// started records the rollout of name from one version to another.
func (h *history) started(name string, to seenVersion, from string, rollback bool) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vh := h.vm(name)
	v := h.record(name, to)
	h.set(v, ResultRollingOut, "")
	vh.Rollout = &rolloutRecord{From: from, To: v.Digest, Started: v.Since, Rollback: rollback}
	return h.commitLocked(name)
}

// ended records how name's rollout to the version to ended.
func (h *history) ended(name string, phase supervise.RolloutPhase, to, reason string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.endLocked(name, phase, to, reason)
	return h.commitLocked(name)
}

func (h *history) endLocked(name string, phase supervise.RolloutPhase, to, reason string) {
	vh := h.vm(name)
	rollback := vh.Rollout != nil && vh.Rollout.Rollback
	vh.Rollout = nil
	v := vh.find(to)
	if v == nil {
		return
	}
	prev := vh.find(vh.Current)
	switch phase {
	case supervise.RolloutSucceeded, supervise.RolloutFailed:
		if prev != nil && prev != v {
			if rollback {
				h.set(prev, ResultRolledBack, "an operator rolled back to "+short(to))
			} else {
				h.set(prev, ResultSuperseded, "")
			}
		}
		if phase == supervise.RolloutSucceeded {
			h.set(v, ResultRunning, "")
		} else {
			h.set(v, ResultFailed, reason)
		}
		v.Started = v.Since
		vh.Current = to
	case supervise.RolloutReverted:
		h.set(v, ResultRolledBack, reason)
	default:
		h.set(v, ResultInterrupted, reason)
	}
}

// current returns the version name runs, if known.
func (h *history) current(name string) (versionRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vh := h.vms[name]
	if vh == nil {
		return versionRecord{}, false
	}
	v := vh.find(vh.Current)
	if v == nil {
		return versionRecord{}, false
	}
	return *v, true
}

// bad returns the record of name's version digest when it failed.
func (h *history) bad(name, digest string) (versionRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vh := h.vms[name]
	if vh == nil {
		return versionRecord{}, false
	}
	v := vh.find(digest)
	if v == nil || !v.bad() || vh.Current == digest {
		return versionRecord{}, false
	}
	return *v, true
}

// list returns name's versions, newest first.
func (h *history) list(name string) []versionRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vh := h.vms[name]; vh != nil {
		return slices.Clone(vh.Versions)
	}
	return nil
}

// lookup finds name's version by its digest or a prefix of at least 4
// digits that names one version only; "" is the version that ran before
// the current one.
func (h *history) lookup(name, digest string) (versionRecord, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vh := h.vms[name]
	if vh == nil || len(vh.Versions) == 0 {
		return versionRecord{}, fmt.Errorf("%w: VM %s has no versions in its history", ErrNoVersion, name)
	}
	if digest == "" {
		for _, v := range vh.Versions { // newest first
			if v.Result == ResultSuperseded {
				return v, nil
			}
		}
		return versionRecord{}, fmt.Errorf("%w: no earlier version of VM %s ran on this node", ErrNoVersion, name)
	}
	digest = strings.ToLower(digest)
	if len(digest) < 4 {
		return versionRecord{}, fmt.Errorf("%w: give at least 4 digits of the digest, not %q", ErrNoVersion, digest)
	}
	var found []versionRecord
	for _, v := range vh.Versions {
		if strings.HasPrefix(v.Digest, digest) {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		var known []string
		for _, v := range vh.Versions {
			known = append(known, short(v.Digest))
		}
		return versionRecord{}, fmt.Errorf("%w: VM %s has no version %s in its history (%s)", ErrNoVersion, name, digest, strings.Join(known, ", "))
	case 1:
		return found[0], nil
	}
	return versionRecord{}, fmt.Errorf("%w: %s names %d versions of VM %s: give more digits", ErrNoVersion, digest, len(found), name)
}

// commitLocked sorts name's versions, drops the oldest beyond keep (never
// the current one, nor the one rolling out), writes the history, and
// returns the digests it dropped.
func (h *history) commitLocked(name string) ([]string, error) {
	vh := h.vms[name]
	slices.SortStableFunc(vh.Versions, func(a, b versionRecord) int { return b.Since.Compare(a.Since) })
	var dropped []string
	for len(vh.Versions) > h.keep {
		i := len(vh.Versions) - 1
		for ; i >= 0; i-- {
			d := vh.Versions[i].Digest
			if d != vh.Current && (vh.Rollout == nil || d != vh.Rollout.To) {
				break
			}
		}
		if i < 0 {
			break
		}
		dropped = append(dropped, vh.Versions[i].Digest)
		vh.Versions = slices.Delete(vh.Versions, i, i+1)
	}
	return dropped, h.writeLocked()
}

// writeLocked writes the history file, whole.
func (h *history) writeLocked() error {
	if h.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(historyJSON{VMs: h.vms}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(h.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("keep the versions of the VMs in %s: %w", h.path, err)
	}
	return nil
}
