//go:build unix

package launcher

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedFDs marks every descriptor of this process above 2
// close-on-exec, as systemd does for the processes it starts, so that a VM
// gets stdin, stdout, stderr and what the launcher passes on purpose (its
// lease pipe, a command's ExtraFiles), and nothing the node inherited from
// whoever started it: a file a shell left open (`exec 9</secret`), a
// socket of a supervisor. Descriptors that Go opens are close-on-exec
// already. A node calls it once, at start, before it launches anything;
// the descriptors stay open for the node itself.
//
// On Linux 5.11 and later it is one close_range(3, ~0,
// CLOSE_RANGE_CLOEXEC); elsewhere, and on older kernels, it marks each
// descriptor listed in /proc/self/fd or /dev/fd.
func CloseInheritedFDs() error {
	if err := closeRangeCloexec(); err == nil {
		return nil
	}
	return markEach()
}

// markEach sets FD_CLOEXEC on each open descriptor above 2.
func markEach() error {
	var names []string
	var err error
	for _, dir := range []string{"/proc/self/fd", "/dev/fd"} {
		var f *os.File
		if f, err = os.Open(dir); err != nil {
			continue
		}
		names, err = f.Readdirnames(-1)
		f.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 {
			continue
		}
		// The listing's own descriptor is closed by now: EBADF.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return err
		}
	}
	return nil
}
