//go:build unix

package execdiag_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre/internal/execdiag"
	"github.com/vmre/vmre/internal/vmretest"
)

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	header, arch := vmretest.ForeignELF()
	for _, c := range []struct {
		name, path string
		err        error
		want       string
	}{
		{"foreign ELF", write("armvm", string(header)), syscall.ENOEXEC, "it is an ELF program built for " + arch + "; this machine is "},
		{"no #! line", write("script", "echo hi\n"), syscall.ENOEXEC, "it is neither a program nor a script with a #! line"},
		{"CR in #!", write("crlf", "#!/bin/sh\r\necho hi\r\n"), syscall.ENOEXEC, "carriage return"},
		{"Windows program", write("vm.exe", "MZ\x90\x00"), syscall.ENOEXEC, "it is a Windows program"},
		{"missing interpreter", write("nointerp", "#!/nonexistent/sh\n"), syscall.ENOENT, "its #! line names /nonexistent/sh, which does not exist"},
		{"nothing to add", write("fine", "#!/bin/sh\n"), syscall.ENOENT, ""},
	} {
		if got := execdiag.Explain(c.path, c.err); !strings.Contains(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("%s: %q; want %q", c.name, got, c.want)
		}
	}
}

func TestRunsHere(t *testing.T) {
	_, arch := vmretest.ForeignELF()
	if execdiag.RunsHere("linux", arch) || execdiag.RunsHere("plan9", "amd64") {
		t.Errorf("RunsHere takes another platform for this one")
	}
}
