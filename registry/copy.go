package registry

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrChanged is the error of a copy of a VM's bytes whose file is no
// longer the one loaded: it was replaced or written since.
var ErrChanged = errors.New("the VM's file changed since it was loaded")

// Copy is a copy of a VM's bytes kept apart from the plugin directory,
// such as a node's copy of a version of a VM, which lets the node run
// that version after its file has changed.
type Copy struct {
	// ID and File are the VM's ID and the name of its file in the plugin
	// directory.
	ID, File string
	// Path is the copy's path.
	Path string
	// Digest is the SHA-256 digest its bytes must have.
	Digest Digest
	// Pinned makes the VM pinned: on Linux the copy is sealed as a pinned
	// file of the directory is, and its commands run the sealed bytes.
	Pinned bool
	// Verified says that the caller made the copy from bytes of Digest and
	// synced it: an unpinned copy is not read again. A pinned one always
	// is, as it is sealed.
	Verified bool
}

// OpenCopy makes a VM of a copy of its bytes. Unless the copy is Verified,
// it reads it whole and fails, with an error that says so, unless its
// bytes are c.Digest's: a copy that was changed or damaged never runs. A
// pinned copy on Linux is sealed while it is read, as Load seals a pinned
// file, so that the bytes checked are the bytes run; any other VM runs
// c.Path, as an unpinned file of the directory runs its path. Close the VM
// once no launch uses it.
func OpenCopy(c Copy) (*VM, error) {
	if c.ID == "" || c.File == "" || c.Path == "" {
		return nil, errors.New("registry.OpenCopy: a Copy needs an ID, a File and a Path")
	}
	path, err := filepath.Abs(c.Path)
	if err != nil {
		return nil, fmt.Errorf("the copy of VM %s: %w", c.ID, err)
	}
	f, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("the copy of VM %s: %w", c.ID, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (mode %s)", info.Mode())
	}
	if err != nil {
		return nil, fmt.Errorf("the copy of VM %s at %s: %w", c.ID, path, err)
	}
	v := &VM{id: c.ID, file: c.File, path: path, pinned: c.Pinned, digestKnown: true, size: info.Size()}
	switch {
	case c.Pinned && canSeal:
		v.img, v.digest, v.size, err = sealFile(f, c.ID, make([]byte, copyBufferSize))
	case c.Verified && !c.Pinned:
		v.digest = c.Digest
	default:
		v.digest, v.size, err = hashFile(f, make([]byte, copyBufferSize))
	}
	if err != nil {
		return nil, fmt.Errorf("the copy of VM %s at %s: %w", c.ID, path, err)
	}
	if v.digest != c.Digest {
		v.Close()
		return nil, fmt.Errorf("the copy of VM %s at %s has sha256 %s, not %s: it was changed or damaged since it was made", c.ID, path, v.digest, c.Digest)
	}
	return v, nil
}

// CopyTo writes the VM's bytes, as it was loaded, to w, and returns their
// digest, which it records (Digest, DigestKnown): a sealed VM's from its
// seal; any other's from its file, provided the file is the one loaded,
// unchanged from the start of the copy to its end: else the error matches
// ErrChanged, and w holds bytes of no version. A pinned VM's bytes must be
// its digest's.
func (v *VM) CopyTo(w io.Writer) (Digest, error) {
	v.mu.Lock()
	closed, img, ident, known, digest := v.closed, v.img, v.ident, v.digestKnown, v.digest
	v.mu.Unlock()
	if closed {
		return Digest{}, fmt.Errorf("copy VM %s: the VM was closed (%w)", v.id, fs.ErrClosed)
	}
	var r io.Reader
	if img != nil {
		f, err := img.open()
		if err != nil {
			return Digest{}, fmt.Errorf("copy VM %s from its seal: %w", v.id, err)
		}
		defer f.Close()
		r = io.NewSectionReader(f, 0, v.size)
	} else {
		f, err := openFile(v.path)
		if err != nil {
			return Digest{}, fmt.Errorf("copy VM %s: %w", v.id, err)
		}
		defer f.Close()
		if err := sameFile(f, ident.id); err != nil {
			return Digest{}, fmt.Errorf("copy VM %s: %w", v.id, err)
		}
		r = &identityChecked{f: f, want: ident.id}
	}
	d, err := copyHashing(w, r)
	if err != nil {
		return Digest{}, fmt.Errorf("copy VM %s: %w", v.id, err)
	}
	if known && d != digest {
		return Digest{}, fmt.Errorf("copy VM %s: %w (sha256 %s, loaded as %s)", v.id, ErrChanged, d, digest)
	}
	v.setDigest(d)
	return d, nil
}

// CopyFromProcess writes the bytes that process pid runs to w, and returns
// their digest, which it records: the process must run the VM's file as it
// was loaded (on Linux, /proc/PID/exe names it even after a rename over it
// or its removal), else the error matches ErrChanged. It is how a caller
// keeps the bytes of a version that runs from its file after that file
// was replaced. Other platforms, and a VM that is a script (its process
// runs its interpreter), have none.
func (v *VM) CopyFromProcess(pid int, w io.Writer) (Digest, error) {
	v.mu.Lock()
	ident := v.ident
	v.mu.Unlock()
	f, err := openExe(pid)
	if err != nil {
		return Digest{}, fmt.Errorf("copy VM %s from process %d: %w", v.id, pid, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Digest{}, fmt.Errorf("copy VM %s from process %d: %w", v.id, pid, err)
	}
	// Its change time is not compared: a rename over the file, or its
	// removal, changes it, not its bytes; a write changes its modification
	// time.
	if got, want := fileIDOf(info), ident.id; want == (fileID{}) || got.dev != want.dev || got.ino != want.ino ||
		got.size != want.size || got.mtime != want.mtime {
		return Digest{}, fmt.Errorf("copy VM %s from process %d: %w", v.id, pid, ErrChanged)
	}
	d, err := copyHashing(w, f)
	if err != nil {
		return Digest{}, fmt.Errorf("copy VM %s from process %d: %w", v.id, pid, err)
	}
	v.setDigest(d)
	return d, nil
}

// Identity returns the identity of the VM's file as the registry took it
// (its device, inode, size, modification and change times), in a form to
// keep, and whether it is settled: taken when the file's times were
// already older than the file systems' coarsest clock tick, so that a file
// found later with the same identity is, by that alone, the same file.
func (v *VM) Identity() (id string, settled bool) {
	v.mu.Lock()
	ident := v.ident
	v.mu.Unlock()
	i := ident.id
	if i == (fileID{}) {
		return "", false
	}
	return fmt.Sprintf("%d:%d:%d:%d:%d", i.dev, i.ino, i.size, i.mtime, i.ctime), ident.proves(i)
}

// sameFile fails unless f is the file of identity want.
func sameFile(f *os.File, want fileID) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if want == (fileID{}) || fileIDOf(info) != want {
		return ErrChanged
	}
	return nil
}

// identityChecked reads f and, at its end, checks that f is still the file
// of identity want: a write during the read changes its times.
type identityChecked struct {
	f    *os.File
	want fileID
}

func (r *identityChecked) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err == io.EOF {
		if cerr := sameFile(r.f, r.want); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// copyHashing copies r to w and returns the digest of what it copied.
func copyHashing(w io.Writer, r io.Reader) (Digest, error) {
	h := sha256.New()
	var d Digest
	if _, err := io.CopyBuffer(io.MultiWriter(w, h), r, make([]byte, copyBufferSize)); err != nil {
		return d, err
	}
	h.Sum(d[:0])
	return d, nil
}
