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

// Exit codes of the clients of a running node (ps, inspect, logs, events,
// stop, start, restart, reload, remote), by the admin service's answer;
// docs/OPERATIONS.md lists them. 0, 1 and 2 are as above.
const (
	exitNotFound        = 6 // not_found: no VM of that name
	exitUnauthenticated = 7 // unauthenticated, permission_denied: the admin token
	exitUnavailable     = 8 // no node found, or it does not answer
)

const clientCodesHelp = `Exit codes of ps, inspect, logs, events, stop, start, restart and reload:
  0  success
  1  the node refused or failed the call (a launch that failed, a reload with refused entries)
  2  bad flags, or several nodes run and none was chosen (--node, VMRE_NODE)
  6  no VM of that name
  7  the node refused the admin token
  8  no node found, or the node does not answer
`

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
