package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestShebang(t *testing.T) {
	for _, tc := range []struct {
		head, interp, arg string
		ok                bool
	}{
		{"#!/bin/sh\necho", "/bin/sh", "", true},
		{"#! /usr/bin/env python3 \nimport os", "/usr/bin/env", "python3", true},
		{"#!/usr/bin/env -S python3 -u\n", "/usr/bin/env", "-S python3 -u", true},
		{"#!/bin/bash\t-e\n", "/bin/bash", "-e", true},
		{"\x7fELF\x02\x01", "", "", false},
		{"#!\n", "", "", false},
	} {
		interp, arg, ok := shebang([]byte(tc.head))
		if interp != tc.interp || arg != tc.arg || ok != tc.ok {
			t.Errorf("%q: %q %q %v, want %q %q %v", tc.head, interp, arg, ok, tc.interp, tc.arg, tc.ok)
		}
	}
	for arg, want := range map[string]string{"python3": "python3", "-S python3 -u": "python3", "-i PYTHONPATH=/x node": "node", "-i": ""} {
		if got := envProgram(arg); got != want {
			t.Errorf("envProgram(%q) = %q, want %q", arg, got, want)
		}
	}
}

// A script's interpreter chain is granted with its installation: env, the
// program it finds on the VM's PATH, and that program's own interpreter
// when it is itself a script (as pyenv's shims are).
func TestInterpreterGrants(t *testing.T) {
	root := filepath.Join(t.TempDir(), "opt", "lang")
	shims := filepath.Join(root, "shims")
	bin := filepath.Join(root, "versions", "1.0", "bin")
	for _, d := range []string{shims, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The shim is a script run by /bin/sh; the real interpreter a file.
	if err := os.WriteFile(filepath.Join(shims, "lang"), []byte("#!/bin/sh\nexec "+bin+"/lang \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	grants := interpreterGrants([]byte("#!/usr/bin/env lang\n"), "/nonexistent:"+shims)
	var paths []string
	for _, g := range grants {
		paths = append(paths, g.Path)
	}
	for _, want := range []string{"/usr/bin/env", filepath.Join(shims, "lang"), root, "/bin/sh"} {
		if !slices.Contains(paths, want) {
			t.Errorf("grants %v lack %s", paths, want)
		}
	}
	if interpreterGrants([]byte("\x7fELF"), "") != nil {
		t.Error("an ELF file got interpreter grants")
	}
}

// An interpreter's installation is never / or a directory holding a home.
func TestInstallRoot(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	for dir, want := range map[string]bool{"/usr": false, "/opt/python": true, "/home": false, "/home/op": false, "/home/op/.pyenv": true} {
		if got := grantable(dir); got != want {
			t.Errorf("grantable(%s) = %v, want %v", dir, got, want)
		}
	}
	if got := installRoot("/bin/sh"); got != "" && got != "/usr" && filepath.Dir(got) == "/" {
		t.Errorf("installRoot(/bin/sh) = %s", got)
	}
}
