package metrics

import (
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the kernel's clock ticks per second that /proc counts in: 100
// on every Linux that Go runs on.
const userHZ = 100

// procRoot is /proc and the boot time, read once: a process's start time
// is counted from the boot, and reading /proc/stat for it at every scrape
// would cost more than all the rest of a VM's figures.
var procRoot struct {
	once sync.Once
	fs   procfs.FS
	boot uint64
	err  error
}

// readProcess reads a process's figures from /proc.
func readProcess(pid int) (process, error) {
	procRoot.once.Do(func() {
		if procRoot.fs, procRoot.err = procfs.NewDefaultFS(); procRoot.err != nil {
			return
		}
		var st procfs.Stat
		if st, procRoot.err = procRoot.fs.Stat(); procRoot.err == nil {
			procRoot.boot = st.BootTime
		}
	})
	if procRoot.err != nil {
		return process{}, procRoot.err
	}
	p, err := procRoot.fs.Proc(pid)
	if err != nil {
		return process{}, gone(err)
	}
	stat, err := p.Stat()
	if err != nil {
		return process{}, gone(err)
	}
	out := process{
		cpu:     time.Duration(stat.CPUTime() * float64(time.Second)),
		rss:     int64(stat.ResidentMemory()),
		fds:     -1,
		started: startTime(procRoot.boot, stat.Starttime),
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		out.fds = n
	}
	return out, nil
}

// startTime is the start of a process that started ticks clock ticks after
// the boot, at boot seconds since the epoch. A tick is converted before it
// is counted: ticks in nanoseconds overflow after some 3 years of uptime.
func startTime(boot, ticks uint64) time.Time {
	return time.Unix(int64(boot), 0).Add(time.Duration(ticks) * (time.Second / userHZ))
}

// gone turns the error of a process that no longer exists into ESRCH.
func gone(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return syscall.ESRCH
	}
	return err
}
