package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Copy is a copy of a VM's bytes kept apart from the plugin directory,
// such as a node's copy of an earlier version of a VM, which lets the node
// run that version again after its file has changed.
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
}

// OpenCopy makes a VM of a copy of its bytes. It reads the copy whole and
// fails, with an error that says so, unless its bytes are c.Digest's: a
// copy that was changed or damaged never runs. A pinned copy on Linux is
// sealed while it is read, as Load seals a pinned file, so that the bytes
// checked are the bytes run; any other VM runs c.Path, as an unpinned file
// of the directory runs its path. Close the VM once no launch uses it.
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
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		if err == nil {
			err = fmt.Errorf("not a regular file (mode %s)", info.Mode())
		}
		return nil, fmt.Errorf("the copy of VM %s at %s: %w", c.ID, path, err)
	}
	buf := make([]byte, copyBufferSize)
	v := &VM{id: c.ID, file: c.File, path: path, pinned: c.Pinned}
	if c.Pinned && canSeal {
		v.img, v.digest, v.size, err = sealFile(f, c.ID, buf)
	} else {
		v.digest, v.size, err = hashFile(f, buf)
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

// Open returns a reader of the VM's bytes: those of its sealed copy, which
// are its Digest's, when it is sealed; else those its file holds now,
// which may have changed since the load: check the digest of what you
// read. Close the reader when done; the VM may be closed meanwhile.
func (v *VM) Open() (io.ReadCloser, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("read VM %s: the VM was closed (%w)", v.id, fs.ErrClosed)
	}
	if v.img != nil {
		f, err := v.img.open()
		if err != nil {
			return nil, fmt.Errorf("read the sealed copy of VM %s: %w", v.id, err)
		}
		return sectionCloser{io.NewSectionReader(f, 0, v.size), f}, nil
	}
	f, err := openFile(v.path)
	if err != nil {
		return nil, fmt.Errorf("read VM %s: %w", v.id, err)
	}
	return f, nil
}

// sectionCloser reads a section of a file it closes.
type sectionCloser struct {
	*io.SectionReader
	f *os.File
}

func (s sectionCloser) Close() error { return s.f.Close() }
