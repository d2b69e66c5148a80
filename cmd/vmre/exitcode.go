package main

import (
	"errors"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// Exit codes of vmre; docs/DEBUGGING.md lists them.
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

// exitCode maps an error to vmre's exit code: a launch's error by its
// phase, any other by the root package's sentinels.
func exitCode(err error) int {
	var lerr *launcher.LaunchError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &lerr):
		switch {
		case lerr.Phase == launcher.PhaseConfig:
			return exitUsage
		case lerr.Phase == launcher.PhaseVersion:
			return exitVersionMismatch
		case lerr.Phase == launcher.PhaseHandshakeWait && lerr.Exit != nil:
			return exitVMExited
		case lerr.Phase == launcher.PhaseHandshakeWait && errors.Is(lerr.Err, vmre.ErrHandshakeTimeout):
			return exitHandshakeTimeout
		}
		return exitFailure
	case errors.Is(err, vmre.ErrInvalidConfig):
		return exitUsage
	}
	return exitFailure
}
