package bench

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// processCPU is the CPU time process pid has spent so far, all its threads,
// user and kernel, to the nanosecond (the first field of each thread's
// /proc/TID/schedstat); 0 for a process that is gone. A thread that has
// ended is not counted (a Go program seldom ends one).
//
// It reads each thread's file as /proc/TID/schedstat, not under
// /proc/PID/task/TID/: the kernel drops the entries of /proc/PID/task/TID
// when the process is reaped, by a walk under a lock that made each reap
// cost the host ~1 ms once they had been read.
func processCPU(pid int) time.Duration {
	tids, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var total time.Duration
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/" + tid.Name() + "/schedstat")
		if err != nil {
			continue // a thread that has ended
		}
		if f := bytes.Fields(b); len(f) > 0 {
			ns, _ := strconv.ParseInt(string(f[0]), 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// processFaults is the count of page faults (minor and major) of process
// pid so far, from /proc/PID/stat; 0 for a process that is gone.
func processFaults(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces and parentheses: from the 3rd field of stat, the state, on;
	// minflt is the 10th, majflt the 12th.
	i := bytes.LastIndex(b, []byte(") "))
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 10 {
		return 0
	}
	minflt, _ := strconv.ParseInt(string(f[7]), 10, 64)
	majflt, _ := strconv.ParseInt(string(f[9]), 10, 64)
	return minflt + majflt
}

// selfCPU is the CPU time this process has spent so far, user and kernel.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU is the CPU time of this process's children that have been
// reaped so far, user and kernel.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
