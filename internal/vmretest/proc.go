//go:build linux

package vmretest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ProcessGone reports whether pid no longer runs: it does not exist, or it
// is a zombie waiting for a parent that is not the test.
func ProcessGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
