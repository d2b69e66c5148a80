//go:build unix

package launcher

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMarkEach: the fallback of CloseInheritedFDs, for kernels without
// close_range's CLOSE_RANGE_CLOEXEC and systems other than Linux, marks a
// descriptor that is not close-on-exec, and leaves 0, 1 and 2 alone.
func TestMarkEach(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := f.Fd()
	if _, err := unix.FcntlInt(fd, unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	stdin, _ := unix.FcntlInt(0, unix.F_GETFD, 0)
	if err := markEach(); err != nil {
		t.Fatal(err)
	}
	if flags, err := unix.FcntlInt(fd, unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("fd %d: flags %#x, %v; want FD_CLOEXEC", fd, flags, err)
	}
	if now, _ := unix.FcntlInt(0, unix.F_GETFD, 0); now != stdin {
		t.Errorf("stdin's flags went from %#x to %#x", stdin, now)
	}
}
