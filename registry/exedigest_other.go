//go:build !linux

package registry

import (
	"context"
	"errors"
	"os"
)

// exeDigest: only Linux names a process's executable (/proc/PID/exe).
func exeDigest(context.Context, int, fileID, []byte) (Digest, error) {
	return Digest{}, errors.ErrUnsupported
}

// openExe: only Linux names a process's executable (/proc/PID/exe).
func openExe(int) (*os.File, error) { return nil, errors.ErrUnsupported }
