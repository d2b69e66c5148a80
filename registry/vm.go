package registry

import (
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"sync"
)

// VM is one VM of a plugin directory: its names, its file and what a
// launch of it needs. Its methods are safe for concurrent use.
type VM struct {
	id     string
	file   string // the file's name in the directory
	path   string // the file's absolute path
	size   int64
	pinned bool
	img    *image // the sealed copy, for a pinned VM on Linux

	mu          sync.Mutex
	digest      Digest
	digestKnown bool     // digest holds the digest: always for a pinned VM
	ident       identity // the file's when it was loaded (or last proved unchanged)
	aliases     []string
	closed      bool
}

// ID is the VM's ID: its file name less an extension, or the VM an alias
// of that name stands for in the aliases file. Use it to name the VM in
// logs and APIs: the path a sealed VM's command execs names no file.
func (v *VM) ID() string { return v.id }

// Aliases are the VM's further names from the aliases file, sorted. A
// Reload that leaves the VM unchanged may change them.
func (v *VM) Aliases() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.aliases)
}

func (v *VM) setAliases(aliases []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.aliases = aliases
}

// File is the VM's file name in the plugin directory.
func (v *VM) File() string { return v.file }

// Path is the absolute path of the VM's file. A pinned VM on Linux does not
// run from it (see Command).
func (v *VM) Path() string { return v.path }

// Digest is the SHA-256 digest of the VM's bytes, once it is known
// (DigestKnown), else the zero Digest. A pinned VM's is known from its load:
// its file is hashed while its sealed copy is made. An unpinned VM's is
// informational and is not taken at load, so that no launch waits for it:
// Registry.TakeDigest takes it later from a process that runs the VM.
func (v *VM) Digest() Digest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.digest
}

// DigestKnown tells whether Digest holds the VM's digest.
func (v *VM) DigestKnown() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.digestKnown
}

// digestState returns the digest, whether it is known, and the file's
// identity.
func (v *VM) digestState() (Digest, bool, identity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.digest, v.digestKnown, v.ident
}

// setDigest records the digest, once.
func (v *VM) setDigest(d Digest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.digestKnown {
		v.digest, v.digestKnown = d, true
	}
}

// setIdentity records the file's identity, found again unchanged.
func (v *VM) setIdentity(i identity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ident = i
}

// Size is the size of the VM's file as loaded, in bytes.
func (v *VM) Size() int64 { return v.size }

// Pinned tells whether the VM's digest matched a pin.
func (v *VM) Pinned() bool { return v.pinned }

// Sealed tells whether the VM runs from a sealed copy of its bytes (a
// pinned VM on Linux): a memfd, made at load and kept until Close, that
// costs as much memory as the file's size.
func (v *VM) Sealed() bool { return v.img != nil }

// Command returns an unstarted command that runs the VM with args, for a
// launcher to start. Its Args[0] is the VM's Path; it sets no Env,
// SysProcAttr, Stdin, Stdout or Stderr (a launcher's to set).
//
// A sealed VM runs the bytes that were hashed and checked against the pin,
// whatever has happened to its file since: the command execs the sealed
// memfd through /proc/self/fd (an ELF binary), or passes it as ExtraFiles[0]
// and execs /proc/self/fd/3 (a "#!" script, whose interpreter opens the
// path after the exec); add further ExtraFiles after it. The command's Path
// is then not a name: use ID. The VM must not be closed before the command
// has started.
//
// A pinned VM that is not sealed (platforms other than Linux) is hashed
// again here and refused on a mismatch: check-then-exec, which a file
// replaced between this check and the exec defeats. An unpinned VM runs
// whatever its file holds at exec, as AvalancheGo runs its plugins.
//
// A command that cannot run carries the reason in its Err field, which its
// Start returns: a *PinMismatchError, or fs.ErrClosed for a closed VM.
func (v *VM) Command(args ...string) *exec.Cmd {
	v.mu.Lock()
	closed, img := v.closed, v.img
	v.mu.Unlock()
	switch {
	case closed:
		cmd := exec.Command(v.path, args...)
		cmd.Err = fmt.Errorf("run VM %s: the VM was closed (%w); take it from the registry again", v.id, fs.ErrClosed)
		return cmd
	case img != nil:
		return img.command(v.path, args)
	case v.pinned:
		return checkThenExec(v, args)
	default:
		return exec.Command(v.path, args...)
	}
}

// checkThenExec hashes the VM's file and returns a command that execs it if
// the digest is still the pinned one.
func checkThenExec(v *VM, args []string) *exec.Cmd {
	cmd := exec.Command(v.path, args...)
	f, err := openFile(v.path)
	if err != nil {
		cmd.Err = fmt.Errorf("verify VM %s before exec: %w", v.id, err)
		return cmd
	}
	defer f.Close()
	d, _, err := hashFile(f, make([]byte, copyBufferSize))
	switch {
	case err != nil:
		cmd.Err = fmt.Errorf("verify VM %s before exec: %w", v.id, err)
	case d != v.Digest():
		cmd.Err = &PinMismatchError{File: v.file, Pinned: v.Digest(), Actual: d}
	}
	return cmd
}

// Close releases the VM's sealed copy; commands made from then on fail.
// Processes started from it keep running. Close is idempotent. The
// Registry closes its VMs when it closes; close a VM earlier only once it
// has left the registry (Report.Removed, Report.Changed's Old) and none of
// its commands waits to start.
func (v *VM) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	if v.img == nil {
		return nil
	}
	return v.img.close()
}

func (v *VM) isClosed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closed
}
