package sandbox

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// headSize is how much of a file the kernel reads for a "#!" line.
const headSize = 256

// maxInterpreterDepth bounds a chain of scripts run by scripts, as the
// kernel does.
const maxInterpreterDepth = 4

// shebang returns the interpreter and its argument of a "#!" line at the
// start of head, as the kernel splits them: the path, then the rest of the
// line as one argument. ok is false for a file that is not a script.
func shebang(head []byte) (interp, arg string, ok bool) {
	rest, ok := bytes.CutPrefix(head, []byte("#!"))
	if !ok {
		return "", "", false
	}
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i]
	}
	line := strings.Trim(string(rest), " \t\r")
	interp, arg, _ = strings.Cut(line, " ")
	if i := strings.IndexByte(interp, '\t'); i >= 0 {
		interp, arg = interp[:i], interp[i+1:]+" "+arg
	}
	return interp, strings.Trim(arg, " \t"), interp != ""
}

// envProgram returns the program that `env ARG` runs: the first word of
// arg that is neither an option nor a NAME=VALUE assignment.
func envProgram(arg string) string {
	for _, word := range strings.Fields(arg) {
		if strings.HasPrefix(word, "-") || strings.Contains(word, "=") {
			continue
		}
		return word
	}
	return ""
}

// lookPath finds an executable file named name in the directories of
// pathList, as execvp does.
func lookPath(name, pathList string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
			return p
		}
	}
	return ""
}

// interpreterGrants returns what the interpreter of the script whose
// first bytes are head needs to run it: each interpreter of the chain
// (`#!/usr/bin/env python3` runs env, then the python3 of pathList, which
// may itself be a script, as pyenv's shims are) and the installation it
// belongs to (installRoot), read and executed. It returns nil for a file
// that is not a script.
func interpreterGrants(head []byte, pathList string) []grant {
	var grants []grant
	for depth := 0; depth < maxInterpreterDepth; depth++ {
		interp, arg, ok := shebang(head)
		if !ok {
			break
		}
		progs := []string{interp}
		if filepath.Base(interp) == "env" {
			if prog := envProgram(arg); prog != "" {
				if found := lookPath(prog, pathList); found != "" {
					progs = append(progs, found)
				}
			}
		}
		head = nil
		for _, prog := range progs {
			grants = append(grants, grant{Path: prog, Access: accessReadExec, Optional: true})
			if root := installRoot(prog); root != "" {
				grants = append(grants, grant{Path: root, Access: accessReadExec, Optional: true})
			}
			head = readHead(prog) // the last program is the one that reads the script
		}
	}
	return grants
}

// installRoot returns the installation an interpreter belongs to: the
// directory above its bin/, sbin/ or shims/ directory once symbolic links
// are resolved (/root/.pyenv for /root/.pyenv/shims/python3), or its own
// directory. It returns "" rather than a directory too near the root to
// grant (/, /home) or one that holds a home directory.
func installRoot(prog string) string {
	real, err := filepath.EvalSymlinks(prog)
	if err != nil {
		return ""
	}
	dir := filepath.Dir(real)
	root := dir
	switch filepath.Base(dir) {
	case "bin", "sbin", "shims":
		root = filepath.Dir(dir)
	}
	for _, candidate := range []string{root, dir} {
		if grantable(candidate) {
			return candidate
		}
	}
	return ""
}

// grantable tells whether dir may be granted as an interpreter's
// installation: two levels deep at least, and holding no home directory.
func grantable(dir string) bool {
	if strings.Count(strings.Trim(dir, "/"), "/") < 1 {
		return false
	}
	homes := []string{os.Getenv("HOME")}
	if home, err := os.UserHomeDir(); err == nil {
		homes = append(homes, home)
	}
	for _, home := range homes {
		if home != "" && (home == dir || strings.HasPrefix(home, dir+"/")) {
			return false
		}
	}
	return true
}

// readHead returns the first bytes of the file at path, or nil.
func readHead(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	return readHeadOf(f)
}

// readHeadOf returns the first bytes of f, read at offset 0.
func readHeadOf(f io.ReaderAt) []byte {
	buf := make([]byte, headSize)
	n, _ := f.ReadAt(buf, 0)
	return buf[:n]
}
