package sandbox

import (
	"fmt"
	"path/filepath"
	"slices"
)

// Policy is what one VM is granted beyond the default policy, which its
// zero value is (docs/SANDBOX.md lists it): read and execute /usr, /lib*,
// /bin, read /etc and /proc, the VM's own file or sealed copy and the
// interpreter of a "#!" script; read and write its data directory and its
// private temporary directory (Options); TCP connect to the engine's port
// only, bind an ephemeral port only; open files 1024 (soft) and 32768
// (hard), core size 0; no new privileges.
type Policy struct {
	Files   Files   `json:"files"`
	Network Network `json:"network"`
	Limits  Limits  `json:"limits"`
	// User and Group the VM runs as, a name or a number, when the node
	// runs as root; empty: the node's. A node that is not root cannot
	// switch: that rule is then not applied (and Required refuses).
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// LandlockABI is the lowest Landlock ABI the policy accepts: under
	// Required a kernel below it is refused, under BestEffort it is
	// reported. Zero: the ABI of the rules the policy uses.
	LandlockABI int `json:"landlock_abi,omitempty"`
}

// Files are the paths a VM may use beyond the default ones. Each path is
// absolute and must exist when the VM is launched; a directory grants what
// lies beneath it.
type Files struct {
	// Read are paths the VM may read and execute.
	Read []string `json:"read,omitempty"`
	// Write are paths the VM may read, write, create and remove files in.
	Write []string `json:"write,omitempty"`
	// Unrestricted turns the file rules off: the VM sees every file the
	// node's user sees.
	Unrestricted bool `json:"unrestricted,omitempty"`
}

// Network are the TCP ports a VM may use beyond the default ones (Landlock
// ABI 4): connect to the engine's port, bind an ephemeral port (port 0).
type Network struct {
	// Connect are further TCP ports the VM may connect to, on any host.
	Connect []uint16 `json:"connect,omitempty"`
	// Bind are further TCP ports the VM may listen on.
	Bind []uint16 `json:"bind,omitempty"`
	// Unrestricted turns the network rules off, as a VM that must reach
	// servers on ports not known in advance needs (an rpcchainvm plugin
	// under AvalancheGo dials the node's services on ephemeral ports).
	Unrestricted bool `json:"unrestricted,omitempty"`
}

// Limits are a VM's resource limits (setrlimit). A nil field keeps the
// default: OpenFiles 1024 soft and 32768 hard, Core 0, the others the
// node's own.
type Limits struct {
	// OpenFiles is RLIMIT_NOFILE. Go programs raise their soft limit to
	// the hard one by themselves; rpcchainvm plugins raise it to 32768.
	OpenFiles *Limit `json:"open_files,omitempty"`
	// Processes is RLIMIT_NPROC: the tasks (processes and threads) of the
	// VM's user, all of them, not the VM's alone; the kernel does not
	// enforce it for root. Set it with a user of the VM's own.
	Processes *Limit `json:"processes,omitempty"`
	// AddressSpace is RLIMIT_AS, in bytes. Go reserves address space
	// freely: prefer Data.
	AddressSpace *Limit `json:"address_space,omitempty"`
	// Data is RLIMIT_DATA, in bytes: the heap and private mappings.
	Data *Limit `json:"data,omitempty"`
	// Core is RLIMIT_CORE, in bytes (default 0: no core dumps, which would
	// write the VM's memory to disk).
	Core *Limit `json:"core,omitempty"`
	// CPUSeconds is RLIMIT_CPU: the VM gets SIGXCPU at the soft limit and
	// is killed at the hard one.
	CPUSeconds *Limit `json:"cpu_seconds,omitempty"`
}

// Defaults of the limits that a policy does not set.
var (
	defaultOpenFiles = Limit{Soft: 1024, Hard: 32768}
	defaultCore      = Limit{Soft: 0, Hard: 0}
)

// validate checks p, naming the place of a bad value; callers mark its
// error as vmre.ErrInvalidConfig.
func (p *Policy) validate() error {
	for _, set := range []struct {
		key   string
		paths []string
	}{{"files.read", p.Files.Read}, {"files.write", p.Files.Write}} {
		for _, path := range set.paths {
			if !filepath.IsAbs(path) {
				return fmt.Errorf("%s: %q is not an absolute path", set.key, path)
			}
			if filepath.Clean(path) == "/" {
				return fmt.Errorf("%s: \"/\" would grant every file; set files.unrestricted instead", set.key)
			}
		}
	}
	if slices.Contains(p.Network.Connect, 0) {
		return fmt.Errorf("network.connect: port 0 is no port to connect to")
	}
	for _, l := range p.Limits.all() {
		if l.limit != nil && l.limit.Soft > l.limit.Hard {
			return fmt.Errorf("limits.%s: the soft limit %s is above the hard limit %s",
				l.name, formatValue(l.limit.Soft), formatValue(l.limit.Hard))
		}
	}
	if p.LandlockABI < 0 {
		return fmt.Errorf("landlock_abi: %d is no ABI", p.LandlockABI)
	}
	return nil
}

// clone returns a copy of p that shares no slice or limit with it.
func (p Policy) clone() Policy {
	c := p
	c.Files.Read = slices.Clone(p.Files.Read)
	c.Files.Write = slices.Clone(p.Files.Write)
	c.Network.Connect = slices.Clone(p.Network.Connect)
	c.Network.Bind = slices.Clone(p.Network.Bind)
	for i, l := range p.Limits.all() {
		if l.limit != nil {
			v := *l.limit
			*c.Limits.field(i) = &v
		}
	}
	return c
}
