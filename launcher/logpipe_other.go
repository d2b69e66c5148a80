//go:build !unix

package launcher

import (
	"io"
	"syscall"
)

// pipeConn returns nil: the quiet buffer of a pipe stays while it waits.
func pipeConn(io.Reader) syscall.RawConn { return nil }

// readQuiet is not called where pipeConn returns nil.
func readQuiet(syscall.RawConn, **[quietReadBytes]byte) (int, error) { return 0, io.EOF }
