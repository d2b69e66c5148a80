package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// maxABI is the highest Landlock ABI whose rules this package applies: a
// newer kernel gets these rules (Landlock keeps every ABI's meaning), and
// its report shows its own ABI.
const maxABI = 7

// presets are go-landlock's configurations by ABI, up to maxABI.
var presets = [maxABI + 1]landlock.Config{1: landlock.V1, 2: landlock.V2, 3: landlock.V3, 4: landlock.V4,
	5: landlock.V5, 6: landlock.V6, 7: landlock.V7}

// Kernel versions of the Landlock ABIs, for messages.
var abiKernel = [maxABI + 1]string{1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}

func needABI(abi int) string {
	if abi >= 1 && abi <= maxABI {
		return fmt.Sprintf("Landlock ABI %d (Linux %s)", abi, abiKernel[abi])
	}
	return fmt.Sprintf("Landlock ABI %d", abi)
}

// Access a grant gives.
type access string

const (
	accessRead      access = "r"   // read files, list directories
	accessReadExec  access = "rx"  // and execute
	accessReadWrite access = "rw"  // read, execute, write, create, remove, rename within
	accessDevice    access = "dev" // read and write a device file such as /dev/null
)

// grant is a path the VM may use, and how.
type grant struct {
	Path   string `json:"path"`
	Access access `json:"access"`
	// Optional grants are skipped where the path does not exist (the
	// default ones: /lib32, /lib64...); the others must exist.
	Optional bool `json:"optional,omitempty"`
}

// spec is what the node tells the init step: the VM's command and its
// policy with every path and user resolved. It is the init step's argv[1],
// as JSON; the VM's argv follows it.
type spec struct {
	Level  Level  `json:"level"`
	Path   string `json:"path"` // what the init step execs
	Report int    `json:"report_fd"`
	// Image is the init step's descriptor of a sealed copy it execs
	// through /proc/self/fd, or -1; it is closed at the exec.
	Image int `json:"image_fd"`

	Files             []grant `json:"files,omitempty"`
	FilesUnrestricted bool    `json:"files_unrestricted,omitempty"`

	Connect             []uint16 `json:"connect,omitempty"`
	Bind                []uint16 `json:"bind,omitempty"`
	NetworkUnrestricted bool     `json:"network_unrestricted,omitempty"`
	// EngineKeys are the variables, in order, whose host:port names the
	// engine the VM calls back: its port may be connected to.
	EngineKeys []string `json:"engine_keys,omitempty"`

	Limits []specLimit `json:"limits,omitempty"`
	// UID and GID are the user and group to switch to, or -1.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Chown are the directories given to UID:GID before the switch.
	Chown []string `json:"chown,omitempty"`
	// Env is added to the VM's environment.
	Env    []string `json:"env,omitempty"`
	MinABI int      `json:"min_abi,omitempty"`
}

// specLimit is one resource limit to set.
type specLimit struct {
	Name  string `json:"name"` // limitNames
	Limit Limit  `json:"limit"`
}

// facts are what the init step (or the node, checking ahead) knows of the
// kernel and the process it runs in.
type facts struct {
	abi    int
	kernel string
	uid    int  // the effective user id
	setID  bool // may switch user and group (CAP_SETUID, CAP_SETGID)
	raise  bool // may raise a hard limit (CAP_SYS_RESOURCE)
	mptcp  bool // net.mptcp.enabled is 1
	// getenv reads the environment the VM will get.
	getenv func(string) string
	// limit returns a resource limit as it stands.
	limit func(name string) (Limit, error)
}

// plan is what the init step does, and the report it sends.
type plan struct {
	report Report
	cfg    landlock.Config
	// files are the grants with the access sets the ruleset handles.
	files  []plannedGrant
	net    []landlock.Rule
	limits []specLimit
	uid    int
	gid    int
}

type plannedGrant struct {
	grant
	set landlock.AccessFSSet
}

// refused returns the error of a Required launch whose plan misses a
// protective rule, or nil.
func (p *plan) refused() error {
	if p.report.Level != Required {
		return nil
	}
	if missing := p.report.Missing(); len(missing) > 0 {
		return &RefusedError{Missing: missing}
	}
	return nil
}

// makePlan decides what of s the kernel and the process allow, and reports
// it. It does nothing itself: the init step applies the plan.
func makePlan(s *spec, f facts) (*plan, error) {
	p := &plan{uid: s.UID, gid: s.GID, report: Report{Level: s.Level, LandlockABI: f.abi, Kernel: f.kernel}}
	abi := min(f.abi, maxABI)
	add := func(r Rule) { p.report.Rules = append(p.report.Rules, r) }
	landlockRule := func(name string, need int, protective bool, detail string) bool {
		if abi >= need {
			add(Rule{Name: name, Applied: true, Protective: protective, Detail: detail})
			return true
		}
		add(Rule{Name: name, Protective: protective, Missing: needABI(need), Detail: fmt.Sprintf("the kernel has Landlock ABI %d", f.abi)})
		return false
	}
	preset := presets[max(abi, 0)]

	// Files.
	if s.FilesUnrestricted {
		add(Rule{Name: "files", Detail: "off: the policy sets files.unrestricted"})
	} else {
		if landlockRule("files", 1, true, filesDetail(s.Files)) {
			p.cfg.HandledAccessFS = preset.HandledAccessFS
			for _, g := range s.Files {
				p.files = append(p.files, plannedGrant{grant: g, set: accessSet(g.Access, abi) & p.cfg.HandledAccessFS})
			}
		}
		landlockRule("files.truncate", 3, true, "truncating a file needs the right to write it")
		landlockRule("files.ioctl_dev", 5, true, "ioctl on device files opened in the sandbox is limited to the common ones")
	}

	// Network.
	if s.NetworkUnrestricted {
		add(Rule{Name: "network", Detail: "off: the policy sets network.unrestricted"})
	} else {
		connect, engine := connectPorts(s, f.getenv)
		detail := "TCP connect to " + portList(connect, engine) + "; TCP bind to " + portList(append([]uint16{0}, s.Bind...), "")
		if landlockRule("network", 4, true, detail) {
			p.cfg.HandledAccessNet = preset.HandledAccessNet
			for _, port := range connect {
				p.net = append(p.net, landlock.ConnectTCP(port))
			}
			p.net = append(p.net, landlock.BindTCP(0))
			for _, port := range s.Bind {
				p.net = append(p.net, landlock.BindTCP(port))
			}
			if f.mptcp {
				add(Rule{Name: "network.mptcp", Detail: "Landlock's TCP rules do not cover Multipath TCP sockets, which this kernel allows " +
					"(net.mptcp.enabled=1; Go's net.Listen uses them): sysctl -w net.mptcp.enabled=0 closes that"})
			}
		}
	}

	// IPC scopes and the audit log.
	if landlockRule("ipc_scope", 6, true, "no signals to, and no abstract UNIX sockets of, processes outside the sandbox") {
		p.cfg.Scoped = preset.Scoped
	}
	if landlockRule("audit_log", 7, false, "the VM's denied accesses go to the kernel's audit log") &&
		(p.cfg.HandledAccessFS != 0 || p.cfg.HandledAccessNet != 0 || p.cfg.Scoped != 0) {
		p.cfg = p.cfg.EnableLoggingForSubprocesses()
	}
	if s.MinABI > 0 {
		if f.abi >= s.MinABI {
			add(Rule{Name: "landlock_abi", Applied: true, Protective: true, Detail: fmt.Sprintf("the policy asks Landlock ABI %d", s.MinABI)})
		} else {
			add(Rule{Name: "landlock_abi", Protective: true, Missing: needABI(s.MinABI),
				Detail: fmt.Sprintf("the policy asks Landlock ABI %d, the kernel has %d", s.MinABI, f.abi)})
		}
	}

	add(Rule{Name: "no_new_privs", Applied: true, Protective: true, Detail: "setuid and file capabilities give the VM nothing"})
	vmUID := f.uid
	if s.UID >= 0 || s.GID >= 0 {
		if f.setID {
			add(Rule{Name: "user", Applied: true, Protective: true, Detail: fmt.Sprintf("uid %d, gid %d", s.UID, s.GID)})
			if s.UID >= 0 {
				vmUID = s.UID
			}
		} else {
			add(Rule{Name: "user", Protective: true, Missing: "a node running as root (CAP_SETUID, CAP_SETGID)",
				Detail: fmt.Sprintf("uid %d, gid %d asked; the node may not switch", s.UID, s.GID)})
			p.uid, p.gid = -1, -1
		}
	}

	for _, l := range s.Limits {
		rule, set := planLimit(l, f, vmUID == 0)
		add(rule)
		p.limits = append(p.limits, set)
	}
	return p, nil
}

// planLimit decides one limit: a hard limit above the current one needs
// CAP_SYS_RESOURCE; a process limit binds no VM that runs as root.
func planLimit(l specLimit, f facts, runsAsRoot bool) (Rule, specLimit) {
	name := "limits." + l.Name
	want := l.Limit
	if l.Name == "processes" && runsAsRoot {
		return Rule{Name: name, Protective: true, Missing: "a user other than root (policy key user)",
			Detail: want.String() + " asked; the kernel does not enforce it for root"}, l
	}
	if f.raise || f.limit == nil {
		return Rule{Name: name, Applied: true, Detail: want.String()}, l
	}
	cur, err := f.limit(l.Name)
	if err != nil {
		return Rule{Name: name, Detail: err.Error()}, l
	}
	if want.Hard <= cur.Hard {
		return Rule{Name: name, Applied: true, Detail: want.String()}, l
	}
	got := Limit{Soft: min(want.Soft, cur.Hard), Hard: cur.Hard}
	return Rule{Name: name, Detail: fmt.Sprintf("%s asked, %s set: the node's hard limit is %s",
		want, got, formatValue(cur.Hard)), Missing: "CAP_SYS_RESOURCE"}, specLimit{Name: l.Name, Limit: got}
}

// connectPorts returns the TCP ports the VM may connect to: the engine's
// (from the first of s.EngineKeys that is set) and the declared ones, and
// says where the engine's came from.
func connectPorts(s *spec, getenv func(string) string) ([]uint16, string) {
	ports := append([]uint16(nil), s.Connect...)
	for _, key := range s.EngineKeys {
		addr := getenv(key)
		if addr == "" {
			continue
		}
		i := strings.LastIndexByte(addr, ':')
		port, err := strconv.ParseUint(addr[i+1:], 10, 16)
		if i < 0 || err != nil || port == 0 {
			return ports, "no engine port: " + key + "=" + addr + " names none"
		}
		return append([]uint16{uint16(port)}, ports...), "the engine's from " + key
	}
	return ports, "no engine port: none of " + strings.Join(s.EngineKeys, ", ") + " is set"
}

// portList describes ports; note says where the first came from.
func portList(ports []uint16, note string) string {
	if len(ports) == 0 {
		return "no port (" + note + ")"
	}
	var s []string
	for _, p := range ports {
		if p == 0 {
			s = append(s, "an ephemeral port (0)")
		} else {
			s = append(s, strconv.Itoa(int(p)))
		}
	}
	out := strings.Join(s, ", ")
	if note != "" {
		out += " (" + note + ")"
	}
	return out
}

// filesDetail lists the grants by access.
func filesDetail(grants []grant) string {
	var read, write []string
	for _, g := range grants {
		switch g.Access {
		case accessReadWrite:
			write = append(write, g.Path)
		default:
			read = append(read, g.Path)
		}
	}
	return "read " + strings.Join(read, " ") + "; write " + strings.Join(write, " ")
}

// accessSet is the set of Landlock rights of an access at an ABI.
func accessSet(a access, abi int) landlock.AccessFSSet {
	read := landlock.AccessFSSet(ll.AccessFSReadFile | ll.AccessFSReadDir)
	switch a {
	case accessRead:
		return read
	case accessReadExec:
		return read | ll.AccessFSExecute
	case accessDevice:
		return ll.AccessFSReadFile | ll.AccessFSWriteFile | ll.AccessFSTruncate
	case accessReadWrite:
		set := read | ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
			ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSMakeSym |
			ll.AccessFSTruncate
		if abi >= 2 {
			set |= ll.AccessFSRefer // renames and links within the VM's own directories
		}
		return set
	}
	return 0
}
