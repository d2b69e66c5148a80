package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vmre/vmre/internal/atomicfile"
	"github.com/vmre/vmre/registry"
)

// versionsDir is the directory of the data directory where the node keeps
// a copy of the bytes of each version of its VMs.
const versionsDir = "versions"

// store keeps a copy of the bytes of each version of the node's VMs, as
// versions/NAME/DIGEST in the data directory (or in a temporary directory
// of its own without one): the node runs an unpinned VM from its copy, so
// that what runs changes only through a rollout, and runs an earlier
// version from its copy when a rollout goes back to it, after its file
// was overwritten too.
type store struct {
	dir  string
	temp bool // a directory of the node's own, removed at close
}

// openStore opens the store of dataDir, or of a new temporary directory
// when dataDir is "".
func openStore(dataDir string) (*store, error) {
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "vmre-versions-")
		if err != nil {
			return nil, fmt.Errorf("a directory for the copies of the VMs' versions: %w", err)
		}
		return &store{dir: dir, temp: true}, nil
	}
	s := &store{dir: filepath.Join(dataDir, versionsDir)}
	// A node killed during a copy left it under its temporary name.
	stale, _ := filepath.Glob(filepath.Join(s.dir, "*", copyPrefix+"*"))
	for _, path := range stale {
		os.Remove(path)
	}
	return s, nil
}

// copyPrefix begins the name of a copy being made.
const copyPrefix = ".copy.tmp-"

// path is where the copy of the version digest of the VM name is.
func (s *store) path(name, digest string) string { return filepath.Join(s.dir, name, digest) }

// keep copies the bytes of vm, the registry's VM of the name, unless
// they are kept already, and returns their digest: those of its file as
// it was loaded (registry.VM.CopyTo), or with pid, when it is not 0, those
// that process runs, if it runs vm's file as loaded
// (registry.VM.CopyFromProcess): the bytes of a version whose file was
// replaced since. The copy is synced before it takes its name; the end of
// ctx abandons it.
func (s *store) keep(ctx context.Context, name string, vm *registry.VM, pid int) (string, error) {
	if vm.DigestKnown() && s.has(name, vm.Digest().String()) {
		return vm.Digest().String(), nil
	}
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	// No descriptor of the copy open for writing outlives a write
	// (appendFile): the node forks other VMs meanwhile.
	syscall.ForkLock.RLock()
	tmp, err := os.CreateTemp(dir, copyPrefix+"*")
	if err == nil {
		err = tmp.Close()
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	path := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(path)
		}
	}()
	buf := bufio.NewWriterSize(appendFile{path}, copyChunk)
	w := ctxWriter{ctx, buf}
	var d registry.Digest
	if pid != 0 {
		d, err = vm.CopyFromProcess(pid, w)
	}
	if pid == 0 || err != nil { // a script runs as its interpreter: its file, then
		buf.Reset(appendFile{path})
		if terr := os.Truncate(path, 0); terr != nil {
			return "", fmt.Errorf("keep a copy of VM %s: %w", name, terr)
		}
		d, err = vm.CopyTo(w)
	}
	if err == nil {
		err = buf.Flush()
	}
	if err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	digest := d.String()
	if err := os.Chmod(path, 0o500); err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	if err := syncFile(path); err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	if s.has(name, digest) { // kept meanwhile, or before under another identity
		os.Remove(path)
		ok = true
		return digest, nil
	}
	if err := atomicfile.Rename(path, s.path(name, digest)); err != nil {
		return "", fmt.Errorf("keep a copy of VM %s: %w", name, err)
	}
	ok = true
	return digest, nil
}

// copyChunk is how much of a copy appendFile writes at once: a write
// holds back the node's forks (its VMs' launches) for about a millisecond.
const copyChunk = 1 << 20

// appendFile appends each write to the file at path, which it opens for
// it and closes after it, under syscall.ForkLock held for reading, as
// os/exec holds it for writing around each fork. A process forked while
// a descriptor of the copy is open for writing would hold it until its
// own exec, and an exec of the copy in that window (the launch of the
// version just kept) would fail with "text file busy" (ETXTBSY): the
// version would be taken for a bad one.
type appendFile struct{ path string }

func (a appendFile) Write(p []byte) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	n, err := f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// syncFile syncs the file at path through a descriptor open for reading
// alone, which no fork makes a writer of it.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxWriter writes to w until ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// has tells whether the store keeps a copy of the version.
func (s *store) has(name, digest string) bool {
	_, err := os.Stat(s.path(name, digest))
	return err == nil
}

// open makes a VM of the copy of the version v of the VM name; pinned
// seals it (on Linux). A copy whose bytes are not its digest's is removed,
// so that the version's file, if it comes back, is copied again.
func (s *store) open(name string, v versionRecord, pinned bool) (*registry.VM, error) {
	d, err := hex.DecodeString(v.Digest)
	if err != nil || len(d) != len(registry.Digest{}) {
		return nil, fmt.Errorf("the version %q of VM %s is not a SHA-256 digest", v.Digest, name)
	}
	path := s.path(name, v.Digest)
	vm, err := registry.OpenCopy(registry.Copy{ID: name, File: v.File, Path: path, Digest: registry.Digest(d), Pinned: pinned, Verified: true})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("the node keeps no copy of version %s of VM %s: %w", short(v.Digest), name, err)
	case err != nil:
		os.Remove(path)
		return nil, err
	}
	return vm, nil
}

// drop removes the copy of a version.
func (s *store) drop(name, digest string) error {
	if err := os.Remove(s.path(name, digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// close removes a temporary store.
func (s *store) close() {
	if s.temp {
		os.RemoveAll(s.dir)
	}
}

// short is a digest as people read it: its first 12 digits.
func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
