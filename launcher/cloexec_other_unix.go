//go:build unix && !linux

package launcher

import "errors"

// closeRangeCloexec is not used here: CloseInheritedFDs marks each
// descriptor.
func closeRangeCloexec() error { return errors.ErrUnsupported }
