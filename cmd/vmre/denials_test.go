package main

import (
	"strings"
	"testing"
)

// parseTrace reads what the VM was refused from strace -f's lines: after
// the init step's pid exec'd the VM, with calls that other threads split
// joined, each call once with its count, and the policy key that grants
// it (a file to change itself, a file to make its directory), or why the
// VM does without (a runtime's probe); the init step's own calls and the
// calls that did not fail with EACCES or EPERM are left out.
func TestParseTrace(t *testing.T) {
	trace := `100 execve("/tmp/d/vmre-sandbox-init", ["/tmp/d/vmre-sandbox-init", "{...}", "/opt/vm"], 0x7ffd /* 9 vars */) = 0
100 openat(AT_FDCWD, "/root/.bashrc", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
101 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS) = 102
100 execve("/opt/vm", ["/opt/vm"], 0x7ffd /* 9 vars */) = 0
100 openat(AT_FDCWD, "/opt/vm/genesis.json", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3
103 openat(AT_FDCWD, "/var/lib/vm/db/LOCK", O_RDWR|O_CREAT|O_CLOEXEC, 0644 <unfinished ...>
100 openat(AT_FDCWD, "/opt/vm/genesis.json", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
103 <... openat resumed>) = -1 EACCES (Permission denied)
100 mkdir("/home/vm/.cache", 0700) = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "/missing", O_RDONLY) = -1 ENOENT (No such file or directory)
104 connect(7, {sa_family=AF_INET, sin_port=htons(9650), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EACCES (Permission denied)
104 --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL, si_pid=100, si_uid=0} ---
104 rt_sigreturn({mask=[]}) = -1 EACCES (Permission denied)
104 bind(8, {sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::", &sin6_addr), sin6_scope_id=0}, 28) = -1 EACCES (Permission denied)
104 kill(1, 0) = -1 EPERM (Operation not permitted)
100 openat(AT_FDCWD, "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", O_RDONLY) = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "caf\303\251", O_RDONLY) = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "/var/lib/vm/state.json", O_WRONLY|O_TRUNC) = -1 EACCES (Permission denied)
100 unlink("/var/lib/vm/old.json") = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "/dev/tty", O_RDWR|O_NONBLOCK) = -1 EACCES (Permission denied)
100 ioctl(2, TCGETS, 0x7ffdae432980) = -1 EACCES (Permission denied)
`
	exists := func(path string) bool { return path == "/var/lib/vm/state.json" || path == "/var/lib/vm/old.json" }
	denials, err := parseTrace(strings.NewReader(trace), exists)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range denials {
		got = append(got, d.String())
	}
	want := []string{
		"openat /opt/vm/genesis.json: EACCES (2 times); grant: files.read /opt/vm/genesis.json",
		"openat /var/lib/vm/db/LOCK: EACCES; grant: files.write /var/lib/vm/db",
		"mkdir /home/vm/.cache: EACCES; grant: files.write /home/vm",
		"connect port 9650: EACCES; grant: network.connect 9650",
		"bind port 8080: EACCES; grant: network.bind 8080",
		"kill 1, 0: EPERM; a signal to a process outside the sandbox: no key grants it",
		"openat /sys/kernel/mm/transparent_hugepage/hpage_pmd_size: EACCES; the Go runtime's probe of the huge page size: it runs without it",
		"openat café: EACCES",
		"openat /var/lib/vm/state.json: EACCES; grant: files.write /var/lib/vm/state.json",
		"unlink /var/lib/vm/old.json: EACCES; grant: files.write /var/lib/vm/old.json",
		"openat /dev/tty: EACCES; the process's terminal, which a VM has none of: refused or not, it gets none",
		"ioctl TCGETS: EACCES; a check whether a descriptor is a terminal, which a device the VM opened is not",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("denials:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantPolicy := `{"vms":{"myvm":{"files":{"read":["/opt/vm/genesis.json"],"write":["/var/lib/vm/db","/home/vm","/var/lib/vm/state.json","/var/lib/vm/old.json"]},"network":{"connect":[9650],"bind":[8080]}}}}`
	if got := grantPolicy("myvm", denials); got != wantPolicy {
		t.Errorf("grantPolicy:\n%s\nwant:\n%s", got, wantPolicy)
	}
	if got := grantPolicy("myvm", denials[5:7]); got != "" {
		t.Errorf("grantPolicy of a signal and a probe: %s, want none", got)
	}
}

// A trace in which the init step never exec'd the VM is an error: it holds
// nothing of the VM.
func TestParseTraceNoExec(t *testing.T) {
	trace := `100 execve("/tmp/d/vmre-sandbox-init", ["/tmp/d/vmre-sandbox-init"], 0x7ffd /* 9 vars */) = 0
100 execve("/opt/vm", ["/opt/vm"], 0x7ffd /* 9 vars */) = -1 EACCES (Permission denied)
`
	if _, err := parseTrace(strings.NewReader(trace), func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "no exec of the VM") {
		t.Errorf("parseTrace: %v, want an error saying the VM was not exec'd", err)
	}
}
