//go:build linux

package vmretest

import (
	"bytes"
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
	switch ProcessState(pid) {
	case 0, 'Z':
		return true
	}
	return false
}

// ProcessState returns the state letter of pid in /proc (R, S, T, Z...), or
// 0 when it cannot be read.
func ProcessState(pid int) byte {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The state follows the command name in parentheses, which may itself
	// hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// SignalIgnored reports whether pid ignores sig, as the kernel sees it (the
// SigIgn mask of /proc/PID/status): a process that reports it ignores a
// signal may still be on its way to doing so, the kernel is not.
func SignalIgnored(pid int, sig syscall.Signal) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(status)) {
		if hex, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(sig-1)) != 0
		}
	}
	return false
}

// OpenFDs counts this process's open file descriptors, from /proc/self/fd;
// ok is false where there is no such directory.
func OpenFDs() (n int, ok bool) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	return len(entries), true
}
