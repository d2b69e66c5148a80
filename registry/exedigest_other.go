//go:build !linux

package registry

import (
	"context"
	"errors"
)

// exeDigest: only Linux names a process's executable (/proc/PID/exe).
func exeDigest(context.Context, int, fileID, []byte) (Digest, error) {
	return Digest{}, errors.ErrUnsupported
}
