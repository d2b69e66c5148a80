//go:build unix

package registry

import (
	"io/fs"
	"os"
	"syscall"
)

// openFile opens a plugin for reading. O_NONBLOCK keeps a FIFO that took
// the place of a checked file from blocking the load; the file is fstat'ed
// after the open anyway.
func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// isExecutable tells whether a regular file may be executed: any of its
// execute bits is set, as exec.LookPath checks.
func isExecutable(info fs.FileInfo) bool { return info.Mode().Perm()&0o111 != 0 }

// executableHint says how to make a file executable.
const executableHint = "make it executable (chmod +x) or move it out of the plugin directory"
