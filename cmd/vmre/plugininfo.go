package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/execdiag"
)

// Module paths that tell what kind of plugin a Go program is.
const (
	vmreModule        = "github.com/vmre/vmre"
	avalancheGoModule = "github.com/ava-labs/avalanchego"
)

// pluginInfo is what doctor learns of a plugin file before running it.
type pluginInfo struct {
	path      string // resolved, absolute when possible
	size      int64
	goVersion string // "" when not a Go program with build info
	vmre      bool   // a Go program built with github.com/vmre/vmre
	avalanche bool   // a Go program built with avalanchego: an rpcchainvm plugin
	script    string // the #! line of a script
	binary    bool   // starts as an executable format does (ELF, Mach-O, PE), or could not be read
	platform  string // GOOS/GOARCH a Go program was built for, when its build info says
}

// fileProblem is why a plugin file cannot run, with the likely fix.
type fileProblem struct {
	reason, fix string
}

func (p *fileProblem) Error() string { return p.reason }

// exampleNote tells where the example VM is built, for a plugin named
// after it, and nothing for any other.
func exampleNote(name string) string {
	if filepath.Base(name) != "examplevm" {
		return ""
	}
	return " (make build puts examplevm in bin/)"
}

// inspectPlugin finds the plugin (a name without a slash is looked up in
// PATH, as exec does) and checks that it is an executable file.
func inspectPlugin(name string) (pluginInfo, error) {
	path := name
	if filepath.Base(name) == name { // as exec.Command decides
		found, err := exec.LookPath(name)
		if err != nil {
			return pluginInfo{path: name}, &fileProblem{
				reason: fmt.Sprintf("%q is not in PATH", name),
				fix:    "give the plugin's path, for example ./" + name + exampleNote(name),
			}
		}
		path = found
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	info := pluginInfo{path: path}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return info, &fileProblem{reason: "no such file: " + path,
			fix: "check the path; build the plugin first" + exampleNote(path)}
	case err != nil:
		return info, &fileProblem{reason: err.Error(), fix: "check the path and the permissions of its directories"}
	case st.IsDir():
		return info, &fileProblem{reason: path + " is a directory", fix: "give the plugin's executable file, not its directory"}
	case !st.Mode().IsRegular():
		return info, &fileProblem{reason: fmt.Sprintf("%s is not a regular file (%s)", path, st.Mode().Type()),
			fix: "give the plugin's executable file"}
	case st.Mode().Perm()&0o111 == 0:
		return info, &fileProblem{reason: fmt.Sprintf("%s is not executable (mode %s)", path, st.Mode().Perm()),
			fix: "chmod +x " + path}
	}
	info.size = st.Size()
	info.read()
	return info, info.runnable()
}

// runnable finds what would make the kernel refuse a file that is
// executable: a Go program built for another platform, or a script whose
// interpreter is missing. exec would fail with "exec format error" or "no
// such file or directory", which name neither.
func (p *pluginInfo) runnable() error {
	if p.platform != "" && !runsHere(p.platform) {
		return &fileProblem{
			reason: fmt.Sprintf("%s is a program built for %s; this machine is %s/%s", p.path, p.platform, runtime.GOOS, runtime.GOARCH),
			fix:    fmt.Sprintf("build it for this machine: GOOS=%s GOARCH=%s go build", runtime.GOOS, runtime.GOARCH),
		}
	}
	// The kernel takes the #! line as an interpreter and at most one
	// argument, the rest of the line, trailing blanks cut but not a CR.
	line := strings.TrimRight(strings.TrimPrefix(p.script, "#!"), " \t")
	if line == "" {
		return nil
	}
	if strings.HasSuffix(line, "\r") {
		return &fileProblem{reason: fmt.Sprintf("%s: its #! line ends in a carriage return (Windows line endings), which becomes part of the interpreter's name", p.path),
			fix: "convert the file to Unix line endings: sed -i 's/\\r$//' " + p.path}
	}
	name, arg := strings.TrimLeft(line, " \t"), ""
	if i := strings.IndexAny(name, " \t"); i >= 0 {
		name, arg = name[:i], strings.TrimLeft(name[i+1:], " \t")
	}
	if filepath.Base(name) == "env" && arg != "" && !strings.HasPrefix(arg, "-") {
		if strings.ContainsAny(arg, " \t") {
			return &fileProblem{reason: fmt.Sprintf("%s: its #! line asks env to run %q, one name with its blanks: the kernel gives an interpreter one argument", p.path, arg),
				fix: "split the words with env -S: #!/usr/bin/env -S " + arg}
		}
		if _, err := exec.LookPath(arg); err != nil {
			return &fileProblem{reason: fmt.Sprintf("%s: its #! line runs %s, which is not in PATH", p.path, arg),
				fix: "install " + arg + ", or correct the #! line"}
		}
		return nil
	}
	if _, err := os.Stat(name); err != nil {
		return &fileProblem{reason: fmt.Sprintf("%s: its #! line names %s, which does not exist", p.path, name),
			fix: "install the interpreter, or correct the #! line"}
	}
	return nil
}

// runsHere reports whether a program built for platform ("GOOS/GOARCH")
// runs on this machine (execdiag.RunsHere).
func runsHere(platform string) bool {
	goos, goarch, _ := strings.Cut(platform, "/")
	return execdiag.RunsHere(goos, goarch)
}

// read learns what kind of program the file is: a Go program (and with
// which modules) or a script.
func (p *pluginInfo) read() {
	if bi, err := buildinfo.ReadFile(p.path); err == nil {
		p.goVersion = bi.GoVersion
		var goos, goarch string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "GOOS":
				goos = kv.Value
			case "GOARCH":
				goarch = kv.Value
			}
		}
		if goos != "" && goarch != "" {
			p.platform = goos + "/" + goarch
		}
		p.binary = true
		p.vmre = bi.Main.Path == vmreModule
		for _, dep := range bi.Deps {
			p.vmre = p.vmre || dep.Path == vmreModule
			p.avalanche = p.avalanche || dep.Path == avalancheGoModule
		}
		return
	}
	p.binary = true // unless its first bytes say otherwise
	f, err := os.Open(p.path)
	if err != nil {
		return
	}
	defer f.Close()
	head := make([]byte, 128)
	n, _ := f.Read(head)
	if line, _, _ := bytes.Cut(head[:n], []byte("\n")); bytes.HasPrefix(line, []byte("#!")) {
		p.script = string(line)
	}
	p.binary = p.script == "" && hasExecMagic(head[:n])
	if ef, err := elf.NewFile(f); err == nil { // not a Go program: its ELF header tells its architecture
		p.platform = runtime.GOOS + "/" + execdiag.Arch(ef.Machine, ef.Class, ef.ByteOrder == binary.BigEndian)
		ef.Close()
	}
}

// hasExecMagic reports whether head starts as an ELF, Mach-O or PE file.
func hasExecMagic(head []byte) bool {
	for _, magic := range []string{"\x7fELF", "MZ", "\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf",
		"\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe", "\xca\xfe\xba\xbe"} {
		if bytes.HasPrefix(head, []byte(magic)) {
			return true
		}
	}
	return false
}

// describe says what the file is, in a few words.
func (p *pluginInfo) describe() string {
	s := fmt.Sprintf("%s: executable, %s", p.path, byteSize(p.size))
	switch {
	case p.vmre:
		s += ", a Go program (" + p.goVersion + ") built with " + vmreModule
	case p.avalanche:
		s += ", a Go program (" + p.goVersion + ") built with " + avalancheGoModule + ": an rpcchainvm plugin"
	case p.goVersion != "":
		s += ", a Go program (" + p.goVersion + ") that does not import " + vmreModule
	case p.script != "":
		s += ", a script (" + p.script + ")"
	default:
		s += ", not a Go program with build info"
	}
	return s
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// rpcchainvmKey returns the engine address variable an rpcchainvm plugin
// reads (AVALANCHE_VM_RUNTIME_ENGINE_ADDR, ODYSSEY_VM_RUNTIME_ENGINE_ADDR,
// ...), when the file at path looks like one: its bytes name the legacy
// runtime service (vm.runtime.Runtime) and such a variable, and not vmre's
// own (a VM of vmre's client, or vmre itself, names both). Else "".
func rpcchainvmKey(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const suffix, service, own = "_VM_RUNTIME_ENGINE_ADDR", "vm.runtime.Runtime", vmre.EngineAddressKey
	var key string
	var hasService bool
	buf := make([]byte, 1<<20)
	keep := 0 // bytes carried over from the chunk before, so no name is cut in two
	for read := 0; read < 512<<20; {
		n, err := f.Read(buf[keep:])
		read += n
		chunk := buf[:keep+n]
		if bytes.Contains(chunk, []byte(own)) {
			return ""
		}
		hasService = hasService || bytes.Contains(chunk, []byte(service))
		for rest := chunk; ; {
			i := bytes.Index(rest, []byte(suffix))
			if i < 0 {
				break
			}
			start := i
			for start > 0 && (rest[start-1] >= 'A' && rest[start-1] <= 'Z' || rest[start-1] == '_') {
				start--
			}
			if name := string(rest[start : i+len(suffix)]); key == "" && name != suffix {
				key = name
			}
			rest = rest[i+len(suffix):]
		}
		if err != nil {
			break
		}
		keep = min(len(chunk), 64)
		copy(buf, chunk[len(chunk)-keep:])
	}
	if !hasService {
		return ""
	}
	return key
}
