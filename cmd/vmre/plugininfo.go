package main

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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
}

// fileProblem is why a plugin file cannot run, with the likely fix.
type fileProblem struct {
	reason, fix string
}

func (p *fileProblem) Error() string { return p.reason }

// inspectPlugin finds the plugin (a name without a slash is looked up in
// PATH, as exec does) and checks that it is an executable file.
func inspectPlugin(name string) (pluginInfo, error) {
	path := name
	if filepath.Base(name) == name { // as exec.Command decides
		found, err := exec.LookPath(name)
		if err != nil {
			return pluginInfo{path: name}, &fileProblem{
				reason: fmt.Sprintf("%q is not in PATH", name),
				fix:    "give the plugin's path, for example ./" + name + " (make build puts examplevm in bin/)",
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
			fix: "check the path; build the plugin first (make build puts examplevm in bin/)"}
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
	return info, nil
}

// read learns what kind of program the file is: a Go program (and with
// which modules) or a script.
func (p *pluginInfo) read() {
	if bi, err := buildinfo.ReadFile(p.path); err == nil {
		p.goVersion = bi.GoVersion
		p.vmre = bi.Main.Path == vmreModule
		for _, dep := range bi.Deps {
			p.vmre = p.vmre || dep.Path == vmreModule
			p.avalanche = p.avalanche || dep.Path == avalancheGoModule
		}
		return
	}
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
