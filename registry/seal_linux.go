package registry

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// canSeal: on Linux a pinned VM runs from a sealed in-memory copy.
const canSeal = true

// image is the sealed copy of a pinned VM's file: a memfd that nothing can
// write, grow, shrink or unseal, holding the bytes that were hashed. It is
// made once, at load, and every launch of the VM executes it.
type image struct {
	f      *os.File // read-only and close-on-exec
	fd     int
	script bool // starts with "#!"
}

// imageFDFloor is the lowest descriptor an image takes. A command's
// ExtraFiles become the child's descriptors 3, 4, ... before its exec, and
// would take the place of an image numbered among them.
const imageFDFloor = 100

// seals are the seals of an image: its bytes are fixed for its life.
const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// sealFile copies what remains of src into a new memfd while hashing it, seals
// the memfd, and returns it with the digest and size of the bytes copied:
// the digest is that of the image, whatever happens to src meanwhile.
func sealFile(src *os.File, id string, buf []byte) (*image, Digest, int64, error) {
	var d Digest
	// The name shows in /proc/PID/exe of the VM as "/memfd:vmre:ID (deleted)";
	// the kernel caps it at 249 bytes.
	name := "vmre:" + id
	if len(name) > 249 {
		name = name[:249]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 6.3 know no MFD_EXEC; their memfds are executable.
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, d, 0, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:"+name)
	defer mem.Close() // the image keeps a read-only descriptor of its own

	h := sha256.New()
	var head [2]byte
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if n < int64(len(head)) {
				copy(head[n:], buf[:k])
			}
			h.Write(buf[:k])
			if _, err := mem.Write(buf[:k]); err != nil {
				return nil, d, 0, fmt.Errorf("copy into the memfd: %w", err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, d, 0, fmt.Errorf("read: %w", rerr)
		}
	}
	h.Sum(d[:0])
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return nil, d, 0, fmt.Errorf("seal the memfd: %w", err)
	}
	// Keep only a read-only descriptor: no writable one is left open, and
	// kernels that refuse to exec a file open for writing (ETXTBSY) exec it.
	ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d, 0, fmt.Errorf("reopen the memfd read-only: %w", err)
	}
	// Out of the way of ExtraFiles; where the limit of descriptors is lower,
	// command passes the image as a script's.
	if hi, err := unix.FcntlInt(ro.Fd(), unix.F_DUPFD_CLOEXEC, imageFDFloor); err == nil {
		ro.Close()
		ro = os.NewFile(uintptr(hi), ro.Name())
	}
	return &image{f: ro, fd: int(ro.Fd()), script: bytes.Equal(head[:], []byte("#!"))}, d, n, nil
}

// command returns an unstarted command that executes the image.
//
// An ELF binary runs through /proc/self/fd/N of the image's close-on-exec
// descriptor: the kernel resolves the path before it closes close-on-exec
// descriptors, and the VM inherits none. A script cannot: its interpreter
// opens the path after the exec, when N is closed. It gets the image as
// its descriptor 3 (ExtraFiles[0]) and runs as /proc/self/fd/3; the VM
// keeps that read-only descriptor open. Either way the VM's argv[0] is
// argv0, and the path it execs names no file that anyone can replace.
func (m *image) command(argv0 string, args []string) *exec.Cmd {
	// Descriptors from 0 up are the child's stdio and ExtraFiles: an image
	// below imageFDFloor (its descriptor could not be moved up) may not
	// name itself by number there.
	if m.script || m.fd < imageFDFloor {
		cmd := exec.Command("/proc/self/fd/3", args...)
		cmd.Args[0] = argv0
		cmd.ExtraFiles = []*os.File{m.f}
		return cmd
	}
	cmd := exec.Command("/proc/self/fd/"+strconv.Itoa(m.fd), args...)
	cmd.Args[0] = argv0
	return cmd
}

// open returns a read-only descriptor of the image of its own, which its
// reader reads with ReadAt and closes.
func (m *image) open() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(m.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), m.f.Name()), nil
}

func (m *image) close() error { return m.f.Close() }
