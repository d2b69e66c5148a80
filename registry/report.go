package registry

import "errors"

// Report is the outcome of a Load or a Reload, in the shape of
// AvalancheGo's admin.loadVMs answer ({added, failed}) plus what a
// supervisor needs to act on: unchanged, changed and removed VMs.
//
// The registry runs nothing: a supervisor starts the VMs of Added, keeps
// running those of Removed (a removed file does not stop a running VM), and
// picks the new version of a Changed VM for its next launch.
type Report struct {
	// Added are the VMs that loaded and were not loaded before: new IDs,
	// and new versions of loaded VMs (listed in Changed too). Sorted by ID.
	Added []*VM
	// Failed are the refused entries, sorted by entry. An entry of a VM
	// that was loaded before leaves the registry: its ID is no longer
	// found, and its old *VM stays usable until closed.
	Failed []*Problem
	// Unchanged are the VMs loaded before whose file, digest and pin are
	// the same (their aliases may have changed). Sorted by ID.
	Unchanged []*VM
	// Changed pairs each VM of Added that replaces a loaded VM of the same
	// ID with the VM it replaces: its file's bytes, its file name or its pin
	// changed. Sorted by ID.
	Changed []Change
	// Removed are loaded VMs whose ID no entry of the directory names any
	// more. They leave the registry; a running process of one is not
	// stopped, and a pinned one can still be launched from its sealed copy
	// until it is closed. Sorted by ID.
	Removed []*VM
	// Remotes are the remote VMs the directory declares (NAME.remote),
	// all of them, sorted by ID: the node enrolls those it does not know.
	Remotes []Remote
}

// Change is a loaded VM replaced by a new version.
type Change struct {
	Old, New *VM
}

// Err returns the problems of the report joined, or nil when there are none.
func (r *Report) Err() error {
	errs := make([]error, len(r.Failed))
	for i, p := range r.Failed {
		errs[i] = p
	}
	return errors.Join(errs...)
}
