package main

import (
	"errors"

	"github.com/vmre/vmre"
)

// Exit codes of vmre; DESIGN.md's table and docs/DEBUGGING.md list them.
const (
	exitOK               = 0
	exitFailure          = 1 // anything else: exec, listen, health, the VM's own failure
	exitUsage            = 2 // bad flags or configuration (vmre.ErrInvalidConfig)
	exitVersionMismatch  = 3 // vmre.ErrProtocolVersionMismatch
	exitHandshakeTimeout = 4 // vmre.ErrHandshakeTimeout
	exitVMExited         = 5 // vmre.ErrProcessNotFound: the VM exited before its handshake
)

const exitCodesHelp = `Exit codes:
  0  success
  1  any other failure (exec, listen, health probe, a VM that exited non-zero)
  2  bad flags or configuration
  3  protocol version mismatch between the host and the VM
  4  handshake timeout: the VM never called back
  5  the VM exited before its handshake
`

// exitCode maps an error to vmre's exit code. A handshake timeout also
// matches vmre.ErrProcessNotFound, so it is tested first.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, vmre.ErrInvalidConfig):
		return exitUsage
	case errors.Is(err, vmre.ErrProtocolVersionMismatch):
		return exitVersionMismatch
	case errors.Is(err, vmre.ErrHandshakeTimeout):
		return exitHandshakeTimeout
	case errors.Is(err, vmre.ErrProcessNotFound):
		return exitVMExited
	}
	return exitFailure
}
