package server

import (
	"context"
	"slices"

	"github.com/vmre/vmre"
)

// Handshake is one launch's handshake, whatever carries it: a *Launch in an
// Engine (the native handshake, with a token) or a *LegacyListener (the
// rpcchainvm handshake, on a listener of its own).
type Handshake interface {
	// Initialized is closed once the VM has completed its handshake.
	Initialized() <-chan struct{}
	// Result returns the VM's address and protocol version. It is valid
	// once Initialized is closed.
	Result() (addr string, protocolVersion uint)
	// End retires the launch: later calls for it are refused, the VM's
	// lease ends, and a listener of the launch's own closes. It is
	// idempotent.
	End()
	// SetProcess names the process launched for the handshake, which alone
	// (with its descendants) may complete it when the caller is checked.
	SetProcess(pid int)
}

var (
	_ Handshake = (*Launch)(nil)
	_ Handshake = (*LegacyListener)(nil)
)

// AcceptVersions returns the Initializer of a host that speaks the given
// protocol versions. Any other version is refused with a
// *vmre.VersionMismatchError that names hostName and the first version, which
// the engine answers as failed_precondition with a ProtocolVersionMismatch
// detail. It panics without a version, as a program error.
func AcceptVersions(hostName string, versions ...uint) vmre.Initializer {
	if len(versions) == 0 {
		panic("server.AcceptVersions: no protocol version")
	}
	if hostName == "" {
		hostName = vmre.DefaultHostName
	}
	return acceptVersions{hostName: hostName, versions: slices.Clone(versions)}
}

type acceptVersions struct {
	hostName string
	versions []uint
}

func (a acceptVersions) Initialize(_ context.Context, version uint, _ string) error {
	if slices.Contains(a.versions, version) {
		return nil
	}
	return &vmre.VersionMismatchError{HostName: a.hostName, HostVersion: a.versions[0], VMVersion: version}
}
