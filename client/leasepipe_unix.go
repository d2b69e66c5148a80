//go:build unix

package client

import (
	"os"
	"strconv"
	"syscall"

	"github.com/vmre/vmre"
)

// leasePipe adopts the VM's end of the lease pipe that the host named in
// vmre.LeaseFDKey, and removes the variable from the environment, so that
// the VM's children neither inherit the pipe nor believe they hold it. It
// returns nil without a valid one: no variable, or a descriptor that is not
// a pipe (a variable inherited from another process).
func leasePipe(getenv func(string) string) *os.File {
	value := getenv(vmre.LeaseFDKey)
	if value == "" {
		return nil
	}
	os.Unsetenv(vmre.LeaseFDKey)
	fd, err := strconv.Atoi(value)
	if err != nil || fd < 3 {
		return nil
	}
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	syscall.CloseOnExec(fd)
	// Non-blocking, so that the runtime's poller waits for it and Close
	// ends a pending read.
	if syscall.SetNonblock(fd, true) != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "lease")
}
