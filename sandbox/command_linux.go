package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre"
)

// Command returns a command that runs vm through the sandbox's init step
// under policy p: started (by launcher.Launch, as the VM's command), the
// init step applies the policy to itself, sends its report to the node,
// and execs the VM, which keeps vm's Args, Env, Dir and ExtraFiles (at the
// same descriptors), and SysProcAttr; a Context of vm's (exec.CommandContext)
// is not carried over. Name the launch (launcher.WithName): the command's
// path is the init step's program, not the VM's.
//
// vm may execute a file, a "#!" script, or a sealed copy of either through
// /proc/self/fd (registry.VM.Command): the copy's descriptor is passed on
// to the init step. The init step re-executes this program (Init), or
// Options.Executable. Under Required, a policy that this kernel or node
// cannot apply whole is refused here with a *RefusedError, before anything
// starts.
//
// The returned Cmd holds descriptors until its Report is read (or it is
// closed): read it once the command has started.
func Command(vm *exec.Cmd, p Policy, o Options) (*Cmd, error) {
	if vm == nil || vm.Process != nil {
		return nil, fmt.Errorf("%w: sandbox.Command needs an unstarted *exec.Cmd", vmre.ErrInvalidConfig)
	}
	if o.Level == Off {
		return &Cmd{Cmd: vm, off: &Report{Level: Off}}, nil
	}
	if vm.Err != nil {
		return nil, vm.Err
	}
	if o.Level != BestEffort && o.Level != Required {
		return nil, fmt.Errorf("%w: sandbox level %d", vmre.ErrInvalidConfig, int(o.Level))
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("%w: sandbox policy: %w", vmre.ErrInvalidConfig, err)
	}
	s, image, head, err := newSpec(vm, p, o)
	if err != nil {
		if image != nil {
			image.Close()
		}
		return nil, err
	}
	s.Files = append(s.Files, interpreterGrants(head, pathOf(vm.Env))...)

	// Refuse ahead what the init step would refuse: this node's kernel,
	// user and limits are the init step's.
	pl, err := makePlan(s, nodeFacts())
	if err == nil {
		err = pl.refused()
	}
	if err != nil {
		if image != nil {
			image.Close()
		}
		return nil, err
	}

	reportR, reportW, err := os.Pipe()
	if err != nil {
		if image != nil {
			image.Close()
		}
		return nil, fmt.Errorf("sandbox: make the report pipe: %w", err)
	}
	extra := slices.Clone(vm.ExtraFiles)
	s.Report = 3 + len(extra)
	extra = append(extra, reportW)
	child := []*os.File{reportW}
	if image != nil {
		s.Image = 3 + len(extra)
		s.Path = "/proc/self/fd/" + strconv.Itoa(s.Image)
		extra = append(extra, image)
		child = append(child, image)
	}
	arg, err := json.Marshal(s)
	if err != nil {
		reportR.Close()
		for _, f := range child {
			f.Close()
		}
		return nil, err
	}
	args := vm.Args
	if len(args) == 0 {
		args = []string{vm.Path}
	}
	exe := o.Executable
	if exe == "" {
		exe = "/proc/self/exe"
	}
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        append([]string{InitName, string(arg)}, args...),
		Env:         vm.Env,
		Dir:         vm.Dir,
		Stdin:       vm.Stdin,
		Stdout:      vm.Stdout,
		Stderr:      vm.Stderr,
		ExtraFiles:  extra,
		SysProcAttr: vm.SysProcAttr,
	}
	return &Cmd{Cmd: cmd, report: reportR, child: child}, nil
}

// newSpec resolves vm, p and o into what the init step needs. It returns
// the node's duplicate of a sealed copy that vm executes through one of the
// node's descriptors, for the init step to inherit, and the first bytes of
// the VM's file.
func newSpec(vm *exec.Cmd, p Policy, o Options) (s *spec, image *os.File, head []byte, err error) {
	s = &spec{Level: o.Level, Path: vm.Path, Report: -1, Image: -1, UID: -1, GID: -1, MinABI: p.LandlockABI,
		FilesUnrestricted: p.Files.Unrestricted, NetworkUnrestricted: p.Network.Unrestricted,
		Connect: slices.Clone(p.Network.Connect), Bind: slices.Clone(p.Network.Bind)}

	// The VM's file: a path, or a sealed copy named by a descriptor.
	if n, ok := procSelfFD(vm.Path); ok {
		switch {
		case n >= 3 && n < 3+len(vm.ExtraFiles):
			// One of vm's ExtraFiles (a sealed script): the init step
			// and the VM inherit it where it is.
			head = readHeadOf(vm.ExtraFiles[n-3])
		default:
			// A descriptor of the node's, close-on-exec: the init step
			// gets a duplicate of it, and execs that.
			fd, err := unix.FcntlInt(uintptr(n), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("sandbox: the VM's command executes %s: %w", vm.Path, err)
			}
			image = os.NewFile(uintptr(fd), vm.Path)
			head = readHeadOf(image)
		}
	} else {
		path := vm.Path
		if !filepath.IsAbs(path) {
			dir := vm.Dir
			if dir == "" {
				if dir, err = os.Getwd(); err != nil {
					return nil, nil, nil, fmt.Errorf("sandbox: resolve %s: %w", path, err)
				}
			}
			path = filepath.Join(dir, path)
		}
		s.Files = append(s.Files, grant{Path: path, Access: accessReadExec})
		head = readHead(path)
	}

	// The default grants (docs/SANDBOX.md).
	for _, dir := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		s.Files = append(s.Files, grant{Path: dir, Access: accessReadExec, Optional: true})
	}
	// Of /proc, the VM's own directory (/proc/self, resolved by the init
	// step, whose pid the VM keeps) and the host's figures: not the other
	// processes' directories, whose environ and maps the VM's user may
	// read, the node's included.
	for _, path := range []string{"/etc", procSelf, "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg",
		"/proc/uptime", "/proc/sys", "/dev/urandom", "/dev/random"} {
		s.Files = append(s.Files, grant{Path: path, Access: accessRead, Optional: true})
	}
	for _, dev := range []string{"/dev/null", "/dev/zero", "/dev/full"} {
		s.Files = append(s.Files, grant{Path: dev, Access: accessDevice, Optional: true})
	}
	for _, d := range []struct{ key, dir, env string }{{"DataDir", o.DataDir, vmre.DataDirKey}, {"TempDir", o.TempDir, "TMPDIR"}} {
		if d.dir == "" {
			continue
		}
		if !filepath.IsAbs(d.dir) {
			return nil, image, nil, fmt.Errorf("%w: sandbox.Options.%s %q is not an absolute path", vmre.ErrInvalidConfig, d.key, d.dir)
		}
		if info, err := os.Stat(d.dir); err != nil || !info.IsDir() {
			return nil, image, nil, fmt.Errorf("%w: sandbox.Options.%s %q is not a directory (the node makes it): %v", vmre.ErrInvalidConfig, d.key, d.dir, err)
		}
		s.Files = append(s.Files, grant{Path: d.dir, Access: accessReadWrite})
		s.Env = append(s.Env, d.env+"="+d.dir)
		s.Chown = append(s.Chown, d.dir)
	}
	for _, set := range []struct {
		key    string
		paths  []string
		access access
	}{{"files.read", p.Files.Read, accessReadExec}, {"files.write", p.Files.Write, accessReadWrite}} {
		for _, path := range set.paths {
			if _, err := os.Stat(path); err != nil {
				return nil, image, nil, fmt.Errorf("%w: sandbox policy %s: %w", vmre.ErrInvalidConfig, set.key, err)
			}
			s.Files = append(s.Files, grant{Path: filepath.Clean(path), Access: set.access})
		}
	}

	s.EngineKeys = defaultEngineKeys
	if o.EngineAddressKey != "" {
		s.EngineKeys = []string{o.EngineAddressKey}
	}
	limits := p.Limits
	if limits.OpenFiles == nil {
		limits.OpenFiles = &defaultOpenFiles
	}
	if limits.Core == nil {
		limits.Core = &defaultCore
	}
	for _, l := range limits.all() {
		if l.limit != nil {
			s.Limits = append(s.Limits, specLimit{Name: l.name, Limit: *l.limit})
		}
	}
	if s.UID, s.GID, err = lookupIDs(p.User, p.Group); err != nil {
		return nil, image, nil, err
	}
	if s.UID < 0 && s.GID < 0 {
		s.Chown = nil
	}
	return s, image, head, nil
}

// procSelfFD parses /proc/self/fd/N.
func procSelfFD(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "/proc/self/fd/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// pathOf returns the PATH the VM will have: env's, or the node's when env
// is nil (the launcher passes PATH on).
func pathOf(env []string) string {
	if env == nil {
		return os.Getenv("PATH")
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v // the last wins, as in os/exec
		}
	}
	return path
}
