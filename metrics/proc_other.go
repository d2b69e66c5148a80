//go:build !linux

package metrics

import "syscall"

// readProcess reads nothing where there is no /proc: the per-VM process
// figures are Linux-only.
func readProcess(int) (process, error) { return process{}, syscall.ESRCH }
