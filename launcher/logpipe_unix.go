//go:build unix

package launcher

import (
	"io"
	"os"
	"syscall"
)

// pipeConn returns the raw connection of r when it is a pipe the runtime's
// poller waits on, else nil.
func pipeConn(r io.Reader) syscall.RawConn {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readQuiet reads from a pipe into *quiet, a quiet buffer that it takes
// from quietBuffers only once the pipe has something to read, and gives
// back while it waits: an idle pipe holds no buffer. It returns io.EOF at
// the end of the pipe, and the runtime poller's error (a passed read
// deadline) as os.File.Read does.
func readQuiet(raw syscall.RawConn, quiet **[quietReadBytes]byte) (int, error) {
	var n int
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		if *quiet == nil {
			*quiet = quietBuffers.Get().(*[quietReadBytes]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), (*quiet)[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			quietBuffers.Put(*quiet)
			*quiet = nil
			return false // wait until the pipe is readable
		}
		return true
	})
	if *quiet == nil {
		*quiet = quietBuffers.Get().(*[quietReadBytes]byte)
	}
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
