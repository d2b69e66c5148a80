package sandbox

import (
	"bytes"
	"fmt"
	"sync"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// resources are the setrlimit resources of limitNames.
var resources = map[string]int{
	"open_files":    unix.RLIMIT_NOFILE,
	"processes":     unix.RLIMIT_NPROC,
	"address_space": unix.RLIMIT_AS,
	"data":          unix.RLIMIT_DATA,
	"core":          unix.RLIMIT_CORE,
	"cpu_seconds":   unix.RLIMIT_CPU,
}

// landlockABI returns the kernel's Landlock ABI, 0 when it has none (not
// built in, or not enabled at boot).
func landlockABI() int {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil || abi < 0 {
		return 0
	}
	return abi
}

// LandlockABI returns the Landlock ABI of this kernel, 0 when it has none:
// what `vmre doctor` and a node's log tell.
func LandlockABI() int { return kernelOnce().abi }

// kernelFacts are the facts that do not change while the node runs.
type kernelFacts struct {
	abi     int
	release string
	mptcp   bool
}

var kernelOnce = sync.OnceValue(func() kernelFacts {
	var uts unix.Utsname
	release := ""
	if unix.Uname(&uts) == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	return kernelFacts{abi: landlockABI(), release: release, mptcp: mptcpEnabled()}
})

// mptcpEnabled tells whether the kernel lets programs open Multipath TCP
// sockets, which Landlock's TCP rules do not cover.
func mptcpEnabled() bool {
	// Raw calls: os.ReadFile would start the runtime's poller, which the
	// init step, a process that lives a millisecond, has no use for.
	fd, err := unix.Open("/proc/sys/net/mptcp/enabled", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	return err == nil && n > 0 && bytes.Equal(bytes.TrimSpace(b[:n]), []byte("1"))
}

// getLimit returns a resource limit of this process.
func getLimit(name string) (Limit, error) {
	res, ok := resources[name]
	if !ok {
		return Limit{}, fmt.Errorf("no resource limit %q", name)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(res, &rl); err != nil {
		return Limit{}, fmt.Errorf("getrlimit %s: %w", name, err)
	}
	return Limit{Soft: rl.Cur, Hard: rl.Max}, nil
}

// nodeFacts are this process's facts, for the node's check ahead of a
// launch: its init step inherits its user and limits.
func nodeFacts() facts {
	return processFacts(func(string) string { return "" })
}

// processFacts are the facts of this process, its environment read with
// getenv.
func processFacts(getenv func(string) string) facts {
	k := kernelOnce()
	caps := effectiveCaps()
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	return facts{abi: k.abi, kernel: k.release, uid: unix.Geteuid(), mptcp: k.mptcp, getenv: getenv, limit: getLimit,
		setID: has(unix.CAP_SETUID) && has(unix.CAP_SETGID), raise: has(unix.CAP_SYS_RESOURCE)}
}

// effectiveCaps returns this thread's effective capabilities.
func effectiveCaps() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32
}
