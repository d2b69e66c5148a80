package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// denial is a system call that the VM's sandbox refused, from a trace of
// the VM (strace -f).
type denial struct {
	call   string // openat, connect, kill...
	target string // the path, "port 443", or the call's arguments
	errno  string // EACCES, EPERM
	count  int    // times the VM made it
	// key and value grant it in a policy file ("files.read",
	// "/opt/vm/genesis"); "" when no key does.
	key, value string
	// probe says why a VM runs without what it was refused: a runtime's
	// probe of the system, which falls back; "" for any other call.
	probe string
}

// probes are the reads that language runtimes make as they start and do
// without when refused, by path prefix, and what they then do.
var probes = []struct{ prefix, note string }{
	{"/sys/kernel/mm/transparent_hugepage/", "the Go runtime's probe of the huge page size: it runs without it"},
	{"/sys/fs/cgroup/", "the Go runtime's probe of the CPU quota of its cgroup: without it GOMAXPROCS is the number of CPUs; " +
		"set GOMAXPROCS in the VM's environment, or grant files.read /sys/fs/cgroup"},
	{"/dev/tty", "the process's terminal, which a VM has none of: refused or not, it gets none"},
}

// terminalIoctls are the ioctls that ask whether a descriptor is a
// terminal: Landlock refuses them on a device the VM opened (/dev/null),
// where the answer would be no all the same.
var terminalIoctls = []string{"TCGETS", "TIOCGPGRP", "TIOCGWINSZ"}

func (d denial) String() string {
	s := fmt.Sprintf("%s %s: %s", d.call, d.target, d.errno)
	if d.count > 1 {
		s += fmt.Sprintf(" (%d times)", d.count)
	}
	switch {
	case d.probe != "":
		s += "; " + d.probe
	case d.key != "":
		s += "; grant: " + d.key + " " + d.value
	case d.errno == "EPERM" && (d.call == "kill" || d.call == "tgkill" || d.call == "tkill"):
		s += "; a signal to a process outside the sandbox: no key grants it"
	}
	return s
}

var (
	// traceLine is a system call's line of strace -f -o: the pid, the
	// call, its arguments, its result.
	traceLine = regexp.MustCompile(`^(\d+) +([a-z0-9_]+)\((.*)\) += (-?\d+|\?)(?: ([A-Z][A-Z0-9]+))?`)
	// unfinished and resumed are the halves of a call that another
	// thread's interrupted.
	unfinished = regexp.MustCompile(`^(\d+) +(.*) <unfinished \.\.\.>$`)
	resumed    = regexp.MustCompile(`^(\d+) +<\.\.\. ([a-z0-9_]+) resumed>(.*)$`)
	quoted     = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
	port       = regexp.MustCompile(`sin6?_port=htons\((\d+)\)`)
)

// fileCalls are the calls that name a path, and whether they write.
var fileCalls = map[string]bool{
	"open": false, "openat": false, "openat2": false, "execve": false, "execveat": false,
	"access": false, "faccessat": false, "faccessat2": false, "readlink": false, "readlinkat": false,
	"stat": false, "lstat": false, "newfstatat": false, "statx": false, "chdir": false,
	"creat": true, "mkdir": true, "mkdirat": true, "unlink": true, "unlinkat": true, "rmdir": true,
	"rename": true, "renameat": true, "renameat2": true, "link": true, "linkat": true,
	"symlink": true, "symlinkat": true, "mknod": true, "mknodat": true, "truncate": true,
}

// parseTrace reads strace -f's lines of a sandboxed launch and returns
// what the VM was refused (EACCES, EPERM), in the order it first was. The
// trace starts with the init step: its pid's second exec that succeeded is
// the VM's, and the VM's own calls come after it. exists tells whether a
// path exists, to grant the writing of a file or the making of one in its
// directory.
func parseTrace(r io.Reader, exists func(string) bool) ([]denial, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	pending := map[string]string{} // unfinished calls by pid
	first, execs := "", 0
	var out []denial
	seen := map[string]int{} // index in out, by call, target and errno
	for sc.Scan() {
		line := sc.Text()
		if m := unfinished.FindStringSubmatch(line); m != nil {
			pending[m[1]] = m[2]
			continue
		}
		if m := resumed.FindStringSubmatch(line); m != nil {
			head, ok := pending[m[1]]
			if !ok {
				continue
			}
			delete(pending, m[1])
			line = m[1] + " " + head + m[3]
		}
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, call, args, ret, errno := m[1], m[2], m[3], m[4], m[5]
		if first == "" {
			first = pid
		}
		if execs < 2 {
			if pid == first && (call == "execve" || call == "execveat") && ret == "0" {
				execs++
			}
			continue // the init step's own calls
		}
		if errno != "EACCES" && errno != "EPERM" || call == "rt_sigreturn" || call == "sigreturn" {
			// A sigreturn returns the value of the call the signal
			// interrupted (a connect refused, Go's preemption signal
			// in between): that call's own line names it.
			continue
		}
		d := describeDenial(call, args, errno, exists)
		k := d.call + "\x00" + d.target + "\x00" + d.errno
		if i, ok := seen[k]; ok {
			out[i].count++
			continue
		}
		seen[k] = len(out)
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read the trace: %w", err)
	}
	if execs < 2 {
		return out, fmt.Errorf("the trace holds no exec of the VM: the init step did not exec it")
	}
	return out, nil
}

// describeDenial names what a refused call tried, and the policy key that
// would grant it.
func describeDenial(call, args, errno string, exists func(string) bool) denial {
	d := denial{call: call, target: args, errno: errno, count: 1}
	if writes, ok := fileCalls[call]; ok {
		if q := quoted.FindStringSubmatch(args); q != nil {
			path := unquote(q[1])
			d.target = path
			if !filepath.IsAbs(path) {
				return d // relative to a directory the trace does not name
			}
			switch {
			case call == "openat" || call == "open" || call == "openat2":
				writes = strings.Contains(args, "O_WRONLY") || strings.Contains(args, "O_RDWR") || strings.Contains(args, "O_CREAT")
			}
			for _, p := range probes {
				if strings.HasPrefix(path, p.prefix) {
					d.probe = p.note
					return d
				}
			}
			switch {
			case !writes:
				d.key, d.value = "files.read", path
			case exists(path) && !strings.HasPrefix(call, "mk") && !strings.HasPrefix(call, "symlink") && !strings.HasPrefix(call, "link"):
				// A file to change, or remove.
				d.key, d.value = "files.write", path
			default:
				// A file to make: its directory, which must exist when
				// the VM is launched.
				d.key, d.value = "files.write", filepath.Dir(path)
			}
		}
		return d
	}
	switch call {
	case "ioctl":
		for _, name := range terminalIoctls {
			if strings.Contains(args, ", "+name) {
				d.target = name
				d.probe = "a check whether a descriptor is a terminal, which a device the VM opened is not"
			}
		}
	case "connect", "bind":
		if p := port.FindStringSubmatch(args); p != nil {
			d.target = "port " + p[1]
			d.key, d.value = "network."+call, p[1]
		}
	}
	return d
}

// unquote undoes strace's escapes of a string argument.
func unquote(s string) string {
	if u, err := strconv.Unquote(`"` + s + `"`); err == nil {
		return u
	}
	return s
}

// grantPolicy is the policy file that grants the denials to the VM name,
// as JSON on one line, or "" when no key grants any.
func grantPolicy(name string, denials []denial) string {
	type files struct {
		Read  []string `json:"read,omitempty"`
		Write []string `json:"write,omitempty"`
	}
	type network struct {
		Connect []uint16 `json:"connect,omitempty"`
		Bind    []uint16 `json:"bind,omitempty"`
	}
	type policy struct {
		Files   *files   `json:"files,omitempty"`
		Network *network `json:"network,omitempty"`
	}
	var f files
	var n network
	add := func(list []string, v string) []string {
		if slices.Contains(list, v) {
			return list
		}
		return append(list, v)
	}
	addPort := func(list []uint16, v string) []uint16 {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 || slices.Contains(list, uint16(p)) {
			return list
		}
		return append(list, uint16(p))
	}
	for _, d := range denials {
		switch d.key {
		case "files.read":
			f.Read = add(f.Read, d.value)
		case "files.write":
			f.Write = add(f.Write, d.value)
		case "network.connect":
			n.Connect = addPort(n.Connect, d.value)
		case "network.bind":
			n.Bind = addPort(n.Bind, d.value)
		}
	}
	var p policy
	if len(f.Read)+len(f.Write) > 0 {
		p.Files = &f
	}
	if len(n.Connect)+len(n.Bind) > 0 {
		p.Network = &n
	}
	if p.Files == nil && p.Network == nil {
		return ""
	}
	b, _ := json.Marshal(map[string]map[string]policy{"vms": {name: p}})
	return string(b)
}
