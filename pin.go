package vmre

import "errors"

// ErrPinMismatch means a VM's file does not hold the bytes its pin names:
// its SHA-256 digest is not the one the operator wrote down. Retrying
// cannot help; the file or the pin must change. Package registry returns
// it wrapped in a *registry.PinMismatchError that carries both digests.
var ErrPinMismatch = errors.New("pin mismatch")
