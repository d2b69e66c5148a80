package sockowner

import (
	"bytes"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre/internal/proctree"
)

// Proc is a process's directory of descriptors (/proc/PID/fd), opened
// ahead of a Check: the first look at a new process's /proc costs the
// kernel tens of microseconds, which a host can pay while the process
// starts instead of while its caller waits. It also pins the process:
// once it has exited, a Check through it finds nothing, even when its pid
// has been given to another process.
type Proc struct {
	pid int
	fd  int
}

// OpenProc opens the descriptors' directory of process pid.
func OpenProc(pid int) (*Proc, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/" + strconv.Itoa(pid) + "/fd", Err: err}
	}
	return &Proc{pid: pid, fd: fd}, nil
}

// Close closes the directory. It is idempotent; a nil Proc is closed.
func (p *Proc) Close() {
	if p != nil && p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// Check finds the sockets of q and tells whether the process q.Pid, or one
// of its descendants, holds them. It reads the descriptors of the process
// first, and walks its descendants only for a socket not found there.
func (c *Checker) Check(q Query) (Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Result{}, ErrClosed
	}
	if c.d == nil {
		d, err := openDiag()
		if err != nil {
			return Result{}, err
		}
		c.d = d
	}
	return check(c.d, q)
}

// Release closes the Checker's netlink socket until the next Check, which
// opens another: a host that expects no check for a while holds no
// descriptor for it.
func (c *Checker) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != nil {
		c.d.close()
		c.d = nil
	}
}

// Close closes the Checker's netlink socket; Check fails from then on.
func (c *Checker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.d != nil {
		c.d.close()
		c.d = nil
	}
}

func check(d *diag, q Query) (Result, error) {
	var res Result
	conn, err := d.connInode(q.Local, q.Remote)
	if err != nil {
		return Result{}, err
	}
	res.ConnFound = conn != 0
	var listeners []uint64
	for _, a := range q.Listen {
		inode, err := d.listenerInode(a)
		if err != nil {
			return Result{}, err
		}
		if inode != 0 {
			listeners = append(listeners, inode)
		}
	}
	res.ListenFound = len(listeners) > 0
	if !res.ConnFound && !res.ListenFound {
		return res, nil
	}
	done := func() bool {
		return (res.ConnOwned || !res.ConnFound) && (res.ListenOwned || !res.ListenFound)
	}
	each := func(inode uint64) bool {
		if inode == conn {
			res.ConnOwned = true
		}
		if slices.Contains(listeners, inode) {
			res.ListenOwned = true
		}
		return done()
	}
	pid := q.Pid
	if q.Proc != nil {
		pid = q.Proc.pid
		if forEachSocket(q.Proc.fd, each); done() {
			return res, nil
		}
	}
	proctree.Walk(pid, func(p int) bool {
		if p == pid && q.Proc != nil {
			return false // read already
		}
		dir, err := OpenProc(p)
		if err != nil {
			return false
		}
		forEachSocket(dir.fd, each)
		dir.Close()
		return done()
	})
	return res, nil
}

// forEachSocket calls each with the inode of every socket in the
// descriptors' directory dir, until each returns true.
//
// Listing the directory makes the kernel build an entry for every
// descriptor, which costs more than the rest of the check together, so it
// probes first: the directory's size is the number of open descriptors
// (Linux 6.2 and later), N, and a process that has closed none holds
// 0..N-1. Probed from N-1 down, the sockets a VM opened last, its listener
// and its connection to the engine, come first. Only when that finds fewer
// than N descriptors, so that some lie above N-1, is the directory listed
// for them.
func forEachSocket(dir int, each func(inode uint64) bool) {
	var st unix.Stat_t
	if err := unix.Fstat(dir, &st); err != nil {
		return
	}
	open := int(st.Size)
	seen := 0
	for fd := open - 1; fd >= 0; fd-- {
		inode, isFD, isSocket := readFD(dir, fd)
		if isFD {
			seen++
		}
		if isSocket && each(inode) {
			return
		}
	}
	if open > 0 && seen == open {
		return
	}
	for _, fd := range listFDs(dir) {
		if fd < open {
			continue // probed
		}
		if inode, _, isSocket := readFD(dir, fd); isSocket && each(inode) {
			return
		}
	}
}

// readFD reads what descriptor fd of dir is: whether it is open, and
// whether it is a socket, and which.
func readFD(dir, fd int) (inode uint64, isFD, isSocket bool) {
	var name [20]byte
	var link [64]byte // "socket:[4294967295]" and the like fit
	n, err := unix.Readlinkat(dir, string(strconv.AppendInt(name[:0], int64(fd), 10)), link[:])
	if err != nil {
		return 0, false, false
	}
	s, ok := bytes.CutPrefix(link[:n], []byte("socket:["))
	if !ok || n >= len(link) || len(s) < 2 || s[len(s)-1] != ']' {
		return 0, true, false
	}
	inode, err = strconv.ParseUint(string(s[:len(s)-1]), 10, 64)
	return inode, true, err == nil
}

// listFDs lists the descriptors of dir, in ascending order.
func listFDs(dir int) []int {
	if _, err := unix.Seek(dir, 0, 0); err != nil {
		return nil
	}
	var fds []int
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(dir, buf)
		if err != nil || n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	slices.Sort(fds)
	return fds
}
