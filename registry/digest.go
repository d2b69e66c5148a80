package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/vmre/vmre"
)

// Digest is the SHA-256 digest of a VM's file.
type Digest [sha256.Size]byte

// String returns the digest in lowercase hex, as sha256sum prints it.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// parseDigest reads 64 hex digits, in either case.
func parseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != hex.EncodedLen(len(d)) {
		return d, fmt.Errorf("a SHA-256 digest is 64 hex digits, not %d characters", len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("a SHA-256 digest is 64 hex digits: %w", err)
	}
	return d, nil
}

// copyBufferSize is the size of the buffer through which files are hashed
// and copied: large reads keep the number of system calls low.
const copyBufferSize = 1 << 20

// hashFile returns the digest and size of what remains of f.
func hashFile(f *os.File, buf []byte) (Digest, int64, error) {
	h := sha256.New()
	// Hide f's WriteTo, which would copy through a small buffer of its own.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
	var d Digest
	h.Sum(d[:0])
	return d, n, err
}

// PinMismatchError is the error of a VM whose file does not hold the bytes
// its pin names. errors.Is(err, vmre.ErrPinMismatch) is true.
type PinMismatchError struct {
	// File is the VM's file name in the plugin directory.
	File string
	// Pinned is the digest the pins file gives.
	Pinned Digest
	// Actual is the digest of the file's bytes.
	Actual Digest
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("pin mismatch: %s has sha256 %s, its pin is %s; the file is not the one pinned: put the pinned file back, or pin this one", e.File, e.Actual, e.Pinned)
}

// Unwrap makes errors.Is(err, vmre.ErrPinMismatch) true.
func (e *PinMismatchError) Unwrap() error { return vmre.ErrPinMismatch }
