package sandbox

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/vmre/vmre"
)

// InitName is the name the init step runs under: its argv[0], or the base
// name of a link to the program, which Init recognises.
const InitName = "vmre-sandbox-init"

// Options are what the node gives one launch beside the VM's policy. Every
// zero value means the documented default.
type Options struct {
	// Level is how the policy is applied. Off returns the VM's command
	// unchanged.
	Level Level
	// DataDir is the VM's own data directory, which the node makes: the VM
	// may read and write it, and finds it in vmre.DataDirKey. "" grants
	// none.
	DataDir string
	// TempDir is the VM's private temporary directory, which the node
	// makes and removes: the VM may read and write it, and finds it in
	// TMPDIR. "" grants none: the VM then cannot create temporary files.
	TempDir string
	// EngineAddressKey is the variable that gives the VM the engine's
	// address, whose port it may connect to (default: the first set of
	// VMRE_RUNTIME_ENGINE_ADDR, AVALANCHE_VM_RUNTIME_ENGINE_ADDR and
	// ODYSSEY_VM_RUNTIME_ENGINE_ADDR).
	EngineAddressKey string
	// Executable is the program that runs the init step: one that links
	// this package and calls Init first in main (default /proc/self/exe:
	// this program). A small program that does nothing else starts faster
	// than a large node (docs/SANDBOX.md, "Overhead").
	Executable string
}

// defaultEngineKeys are the variables that carry the engine's address to
// native and rpcchainvm VMs (launcher.Config.EngineAddressKey).
var defaultEngineKeys = []string{vmre.EngineAddressKey, "AVALANCHE_VM_RUNTIME_ENGINE_ADDR", "ODYSSEY_VM_RUNTIME_ENGINE_ADDR"}

// lookupIDs resolves a policy's user and group, names or numbers, to a
// uid and gid; -1 for none. A user without a group takes the user's
// primary group.
func lookupIDs(userName, groupName string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			n, nerr := strconv.Atoi(userName)
			if nerr != nil || n < 0 {
				return -1, -1, fmt.Errorf("%w: user: %w", vmre.ErrInvalidConfig, err)
			}
			// A number names a uid, in the user database or not.
			if u, err = user.LookupId(userName); err != nil {
				u = &user.User{Uid: userName, Gid: userName}
			}
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			return -1, -1, fmt.Errorf("%w: user %s: uid %q: %w", vmre.ErrInvalidConfig, userName, u.Uid, err)
		}
		if gid, err = strconv.Atoi(u.Gid); err != nil {
			return -1, -1, fmt.Errorf("%w: user %s: gid %q: %w", vmre.ErrInvalidConfig, userName, u.Gid, err)
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			n, nerr := strconv.Atoi(groupName)
			if nerr != nil || n < 0 {
				return -1, -1, fmt.Errorf("%w: group: %w", vmre.ErrInvalidConfig, err)
			}
			g = &user.Group{Gid: groupName}
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return -1, -1, fmt.Errorf("%w: group %s: gid %q: %w", vmre.ErrInvalidConfig, groupName, g.Gid, err)
		}
	}
	return uid, gid, nil
}
