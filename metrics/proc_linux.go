package metrics

import (
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// readProcess reads a process's figures from /proc.
func readProcess(pid int) (process, error) {
	fs0, err := procfs.NewDefaultFS()
	if err != nil {
		return process{}, err
	}
	p, err := fs0.Proc(pid)
	if err != nil {
		return process{}, gone(err)
	}
	stat, err := p.Stat()
	if err != nil {
		return process{}, gone(err)
	}
	start, err := stat.StartTime()
	if err != nil {
		return process{}, err
	}
	out := process{
		cpu:     time.Duration(stat.CPUTime() * float64(time.Second)),
		rss:     int64(stat.ResidentMemory()),
		fds:     -1,
		started: time.Unix(0, int64(start*1e9)),
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		out.fds = n
	}
	return out, nil
}

// gone turns the error of a process that no longer exists into ESRCH.
func gone(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return syscall.ESRCH
	}
	return err
}
