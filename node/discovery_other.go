//go:build !unix

package node

import "os"

// processGone reports whether no process has the pid any more, as far as
// the system tells without signals: FindProcess opens the process on
// Windows, and fails for one that is gone.
func processGone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	p.Release()
	return false
}
