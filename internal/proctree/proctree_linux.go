package proctree

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses "pid (comm) state ppid pgrp session ... starttime ...",
// where comm may hold spaces and parentheses: the fields after it are
// counted from its last ')'.
func parseStat(pid int, b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// Fields from 3 (state) on; starttime is field 22.
	var f [20][]byte
	n := 0
	for rest := b[i+1:]; n < len(f); {
		rest = bytes.TrimLeft(rest, " \n")
		if len(rest) == 0 {
			break
		}
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		f[n], rest = rest[:end], rest[end:]
		n++
	}
	if n < len(f) || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, n)
	}
	s := Stat{Pid: pid, State: f[0][0]}
	var ok [4]bool
	s.PPid, ok[0] = atoi(f[1])
	s.Pgid, ok[1] = atoi(f[2])
	s.Sid, ok[2] = atoi(f[3])
	var start int
	start, ok[3] = atoi(f[19])
	s.Start = uint64(start)
	if !ok[0] || !ok[1] || !ok[2] || !ok[3] {
		return Stat{}, fmt.Errorf("/proc/%d/stat: a field is not a number", pid)
	}
	return s, nil
}

// atoi parses a decimal number, a leading '-' allowed, without allocating.
func atoi(b []byte) (int, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Children lists the children of pid, from /proc/PID/task/*/children
// (CONFIG_PROC_CHILDREN), or else from every process's parent in /proc.
func Children(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/children")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && t.Name() == strconv.Itoa(pid) {
				return childrenByScan(pid) // no such file in this kernel
			}
			continue // a thread that ended meanwhile
		}
		for f := range strings.FieldsSeq(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func childrenByScan(pid int) []int {
	var out []int
	for _, s := range All() {
		if s.PPid == pid {
			out = append(out, s.Pid)
		}
	}
	return out
}

// All reads the stat of every process in /proc. It reads the directory
// with one descriptor and each stat file into one buffer: on a busy host it
// reads hundreds of them.
func All() []Stat {
	dir, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(dir)
	var out []Stat
	dents := make([]byte, 16<<10)
	buf := make([]byte, 1024)
	path := make([]byte, 0, 32)
	for {
		n, err := unix.Getdents(dir, dents)
		if err != nil || n <= 0 {
			return out
		}
		_, _, names := unix.ParseDirent(dents[:n], -1, nil)
		for _, name := range names {
			pid, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			path = append(append(path[:0], name...), "/stat"...)
			if s, ok := readStatAt(dir, pid, string(path), buf); ok {
				out = append(out, s)
			}
		}
	}
}

// readStatAt reads the stat file at path under dir into buf and parses it.
func readStatAt(dir, pid int, path string, buf []byte) (Stat, bool) {
	fd, err := unix.Openat(dir, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stat{}, false
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil || n <= 0 {
		return Stat{}, false
	}
	s, err := parseStat(pid, buf[:n])
	return s, err == nil
}

// Descendants returns the stat of each descendant of the roots (not the
// roots themselves) that snapshot, one reading of All, holds, parents
// before children. Unlike Walk it reads no entry of the roots' threads in
// /proc: the kernel takes longer to tear down a process whose threads'
// entries were read, and a VM being stopped should die at once.
func Descendants(snapshot []Stat, roots ...int) []Stat {
	byParent := make(map[int][]Stat)
	for _, s := range snapshot {
		byParent[s.PPid] = append(byParent[s.PPid], s)
	}
	var out []Stat
	seen := make(map[int]bool)
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range byParent[p] {
			if !seen[c.Pid] {
				seen[c.Pid] = true
				out = append(out, c)
				queue = append(queue, c.Pid)
			}
		}
	}
	return out
}

// Walk calls visit on pid, then on each of its descendants, parents before
// children, until visit returns true. A process that ends meanwhile is
// skipped, and so are the descendants it could no longer list.
func Walk(pid int, visit func(pid int) bool) {
	queue := []int{pid}
	seen := map[int]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		if visit(p) {
			return
		}
		queue = append(queue, Children(p)...)
	}
}

// HasEnv reports whether the environment pid was started with holds the
// entry kv ("NAME=value"). It reads /proc/PID/environ, which only the
// process's own user and root may read.
func HasEnv(pid int, kv string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for e := range bytes.SplitSeq(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// Signal sends sig to the process s names, unless that process has gone:
// it opens a pidfd of s.Pid, and signals through it only when the process
// it holds started at s.Start. A process that has gone, or whose pid now
// names another one, is not an error.
func Signal(s Stat, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(s.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if errors.Is(err, unix.ENOSYS) {
		return signalByPid(s, sig) // Linux before 5.3
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", s.Pid, err)
	}
	defer unix.Close(fd)
	now, err := ReadStat(s.Pid)
	if err != nil || now.Start != s.Start {
		return nil // gone, or another process
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d: %w", s.Pid, err)
	}
	return nil
}

// signalByPid checks the start time and signals by pid: a pid given to
// another process between the two is the narrow race pidfds close.
func signalByPid(s Stat, sig syscall.Signal) error {
	now, err := ReadStat(s.Pid)
	if err != nil || now.Start != s.Start {
		return nil
	}
	if err := syscall.Kill(s.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", s.Pid, err)
	}
	return nil
}

// WaitAny waits until one of ps has exited, or timeout passes, through
// pidfds, which become readable when their process exits. A process gone
// already ends the wait at once.
func WaitAny(ps []Stat, timeout time.Duration) {
	fds := make([]unix.PollFd, 0, len(ps))
	defer func() {
		for _, p := range fds {
			unix.Close(int(p.Fd))
		}
	}()
	for _, p := range ps {
		fd, err := unix.PidfdOpen(p.Pid, 0)
		if errors.Is(err, unix.ENOSYS) {
			time.Sleep(min(timeout, 50*time.Millisecond)) // Linux before 5.3: look again soon
			return
		}
		if err != nil {
			return // gone: the caller looks again
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms <= 0 {
			return
		}
		if _, err := unix.Poll(fds, ms); err != unix.EINTR {
			return
		}
	}
}
