package vmre

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test for them with errors.Is: the errors returned by this
// module wrap them with context.
var (
	// ErrProtocolVersionMismatch means the VM and the host speak different
	// protocol versions.
	ErrProtocolVersionMismatch = errors.New("protocol version mismatch")
	// ErrHandshakeFailed is wrapped by every error of a launch's handshake;
	// such errors' text starts "handshake failed: ".
	ErrHandshakeFailed = errors.New("handshake failed")
	// ErrHandshakeTimeout means the VM did not call back in time.
	ErrHandshakeTimeout = errors.New("handshake timeout")
	// ErrInvalidConfig means a configuration or usage error.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrProcessNotFound means the VM process is gone: it exited before its
	// handshake, or never called back.
	ErrProcessNotFound = errors.New("process not found")
)

// VersionMismatchError is the error of a protocol version mismatch. It
// wraps ErrProtocolVersionMismatch.
type VersionMismatchError struct {
	// HostName is the host's configured name, such as "vmre".
	HostName string
	// HostVersion is the version the host speaks (the first it accepts).
	HostVersion uint
	// VMVersion is the version the VM sent.
	VMVersion uint
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("protocol version mismatch %s: %d vm: %d", e.HostName, e.HostVersion, e.VMVersion)
}

// Hint says which side to upgrade.
func (e *VersionMismatchError) Hint() string {
	if e.VMVersion < e.HostVersion {
		return fmt.Sprintf("the VM is older than the host: rebuild the VM against protocol version %d, or run a host that speaks version %d", e.HostVersion, e.VMVersion)
	}
	return fmt.Sprintf("the VM is newer than the host: upgrade the host to one that speaks protocol version %d, or use a VM built for version %d", e.VMVersion, e.HostVersion)
}

// Unwrap makes errors.Is(err, ErrProtocolVersionMismatch) true.
func (e *VersionMismatchError) Unwrap() error { return ErrProtocolVersionMismatch }
