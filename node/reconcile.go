package node

import (
	"cmp"
	"maps"
	"slices"
)

// The node's desired state is its plugin directory: the VMs of its files
// (each at one version: a file, its bytes and its pin), and its remote
// declarations (each with the protocol version it expects). Reconciling
// compares it with what the node runs, as Kubernetes' controllers do,
// and returns the actions that make the one the other. It is a pure
// function: apply carries its actions out.

// desired is what a plugin directory asks for.
type desired struct {
	// local are the VMs of its files, by name: their version.
	local map[string]versionKey
	// bad are names whose version failed its rollout before (and is not
	// forced now): it is not rolled out again.
	bad map[string]bool
	// refused are names whose entry is there but refused now (a pin that
	// no longer matches, an unreadable file): what runs is left alone.
	refused map[string]bool
	// remotes are its remote declarations: their protocol version.
	remotes map[string]uint
}

// versionKey is a version of a VM's file as reconciling compares them:
// key is the registry's VM it comes from (the registry keeps a VM's *VM
// while its file and pin are unchanged), digest its bytes ("" while an
// unpinned VM's are unknown).
type versionKey struct {
	key, digest string
}

// current is what the node runs of its plugin directory.
type current struct {
	local   map[string]localState
	remotes map[string]uint
}

// localState is a VM of the directory as the node runs it.
type localState struct {
	version versionKey // the version it runs, or is rolling out, or waits to
	removed bool       // kept running after its file left (KeepRemoved)
}

// actionKind is what reconciling does to one VM.
type actionKind int

const (
	// actRemove stops a VM (its graceful timeout) and forgets it.
	actRemove actionKind = iota + 1
	// actRevoke refuses a remote VM's token at once, ends its session and
	// forgets it.
	actRevoke
	// actKeep marks a VM whose file left as removed and keeps it running
	// (KeepRemoved).
	actKeep
	// actRestore unmarks a removed VM whose file is back.
	actRestore
	// actSwap moves a VM to a version of the same bytes (its file was
	// renamed, or pinned): no rollout, its launches run it from now.
	actSwap
	// actRollout rolls out a changed file's new version (or, for a VM an
	// operator stopped, keeps it for the VM's next start).
	actRollout
	// actKnownBad reports a changed file whose version failed its rollout
	// before: it is not rolled out.
	actKnownBad
	// actAdd supervises a new VM: it launches.
	actAdd
	// actEnroll enrolls a new remote VM: it may handshake.
	actEnroll
)

func (k actionKind) String() string {
	switch k {
	case actRemove:
		return "remove"
	case actRevoke:
		return "revoke"
	case actKeep:
		return "keep"
	case actRestore:
		return "restore"
	case actSwap:
		return "swap"
	case actRollout:
		return "rollout"
	case actKnownBad:
		return "known-bad"
	case actAdd:
		return "add"
	case actEnroll:
		return "enroll"
	}
	return "unknown"
}

// action is one step of a reconciliation.
type action struct {
	kind actionKind
	name string
}

func (a action) String() string { return a.kind.String() + " " + a.name }

// reconcile returns the actions that take the node from have to want, in
// the order to carry them out: what leaves first (so that a name may pass
// from a file to a remote declaration), then what changes, then what is
// new; by name within each kind.
func reconcile(have current, want desired, keepRemoved bool) []action {
	var out []action
	add := func(kind actionKind, name string) { out = append(out, action{kind, name}) }
	change := func(name string, from, to versionKey) {
		switch {
		case from.key == to.key:
		case from.digest != "" && from.digest == to.digest:
			add(actSwap, name)
		case want.bad[name]:
			add(actKnownBad, name)
		default:
			add(actRollout, name)
		}
	}
	for name, st := range have.local {
		wantVersion, isLocal := want.local[name]
		_, isRemote := want.remotes[name]
		switch {
		case isRemote:
			add(actRemove, name) // it became a remote VM: the name must be free
		case want.refused[name]:
			// Refused now: it runs on as it is.
		case !isLocal && keepRemoved && !st.removed:
			add(actKeep, name)
		case !isLocal && !keepRemoved:
			add(actRemove, name)
		case !isLocal:
			// Kept, and marked already.
		case st.removed:
			add(actRestore, name)
			change(name, st.version, wantVersion)
		default:
			change(name, st.version, wantVersion)
		}
	}
	for name, version := range have.remotes {
		wantVersion, isRemote := want.remotes[name]
		switch {
		case !isRemote:
			add(actRevoke, name)
		case wantVersion != version:
			add(actRevoke, name) // a new protocol version: enrolled anew
			add(actEnroll, name)
		}
	}
	for name := range want.local {
		if _, ok := have.local[name]; !ok {
			add(actAdd, name)
		}
	}
	for name := range want.remotes {
		_, wasRemote := have.remotes[name]
		if !wasRemote {
			add(actEnroll, name)
		}
	}
	slices.SortStableFunc(out, func(a, b action) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
	})
	return out
}

// names returns the sorted keys of m.
func names[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
