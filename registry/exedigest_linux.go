package registry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// exeDigest hashes the executable of process pid, provided it is the file
// of identity want.
func exeDigest(ctx context.Context, pid int, want fileID, buf []byte) (Digest, error) {
	var d Digest
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return d, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return d, err
	}
	if got := fileIDOf(info); got != want {
		return d, errors.New("the process does not run the VM's file as it was loaded: it was replaced or changed since, or the process is another")
	}
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return d, fmt.Errorf("read: %w", err)
		}
	}
	h.Sum(d[:0])
	return d, nil
}

// openExe opens the executable of process pid.
func openExe(pid int) (*os.File, error) { return os.Open("/proc/" + strconv.Itoa(pid) + "/exe") }
