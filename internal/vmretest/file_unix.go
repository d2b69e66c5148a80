//go:build unix

package vmretest

import (
	"os"
	"syscall"
)

// WriteExecutable writes data to path with mode perm, holding
// syscall.ForkLock for reading while the file is open for writing, so that
// no process that the test's process forks meanwhile (a VM of a parallel
// test) inherits the open file. Such a child would hold the file open for
// writing until its own exec, and an exec of path in that window fails
// with "text file busy" (ETXTBSY). os/exec takes the lock for writing
// around each fork, as the syscall package documents.
func WriteExecutable(path string, data []byte, perm os.FileMode) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
