// Package proctree reads the process tree in /proc: a process's state,
// parent, group, session and start time, its children and descendants,
// and whether its environment holds a variable. It also signals a process
// it has read without the risk of reaching another one that took its pid
// meanwhile. It serves the launcher, which ends a VM's whole tree, the
// engine's caller check, and a VM that ends its own tree when its host is
// gone. It works on Linux; elsewhere every read fails with
// ErrUnsupported.
package proctree

import "errors"

// ErrUnsupported: this system has no /proc to read.
var ErrUnsupported = errors.New("reading the process tree is not supported on this system")

// Stat is what /proc/PID/stat says of a process that this package uses.
type Stat struct {
	Pid, PPid, Pgid, Sid int
	// State is the state letter: R, S, D, T, t, Z, X...
	State byte
	// Start is the start time in clock ticks since boot: with Pid, it
	// names one process, whose pid may be given to another once it is
	// reaped.
	Start uint64
}

// Zombie reports whether the process has exited and waits to be reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }
