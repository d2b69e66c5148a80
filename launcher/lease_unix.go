//go:build unix

package launcher

import (
	"os"
	"os/exec"
	"strconv"

	"github.com/vmre/vmre"
)

// openLease gives the VM its end of a lease pipe, as the next of cmd's
// ExtraFiles, and returns the variable that names it and the host's end.
// The VM learns from it that its host ended its lease (a byte, then the end
// of the file) or is gone (the end of the file alone: the kernel closed the
// host's end). It costs the host one file descriptor and no goroutine.
func openLease(cmd *exec.Cmd) (env string, vmEnd, hostEnd *os.File, err error) {
	vmEnd, hostEnd, err = os.Pipe()
	if err != nil {
		return "", nil, nil, err
	}
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, vmEnd)
	return vmre.LeaseFDKey + "=" + strconv.Itoa(fd), vmEnd, hostEnd, nil
}
