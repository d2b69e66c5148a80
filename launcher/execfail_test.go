//go:build unix

package launcher_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// TestExecFailureSaysWhy: a plugin built for another architecture fails
// its exec with the file named and what it was built for, and a script
// without a #! line with what it lacks.
func TestExecFailureSaysWhy(t *testing.T) {
	t.Parallel()
	header, arch := vmretest.ForeignELF()
	dir := t.TempDir()
	foreign, noShebang := filepath.Join(dir, "armvm"), filepath.Join(dir, "script")
	if err := os.WriteFile(foreign, header, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noShebang, []byte("echo hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLauncher(t, launcher.Config{})
	for _, c := range []struct{ path, want string }{
		{foreign, "exec " + foreign + ": exec format error: it is an ELF program built for " + arch},
		{noShebang, "exec " + noShebang + ": exec format error: it is neither a program nor a script with a #! line"},
	} {
		_, err := l.Launch(t.Context(), exec.Command(c.path))
		lerr, ok := errors.AsType[*launcher.LaunchError](err)
		if !ok || lerr.Phase != launcher.PhaseExec || !strings.Contains(err.Error(), c.want) {
			t.Errorf("launch of %s: %v; want %q", c.path, err, c.want)
		}
	}
}

// TestSealedCopyNamesItsFile: a command run through /proc/self/fd/N, as
// the registry runs a sealed copy, is named by the file of its Args[0].
func TestSealedCopyNamesItsFile(t *testing.T) {
	t.Parallel()
	header, arch := vmretest.ForeignELF()
	path := filepath.Join(t.TempDir(), "armvm")
	if err := os.WriteFile(path, header, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	cmd.Args[0] = path
	_, err = newLauncher(t, launcher.Config{}).Launch(t.Context(), cmd)
	lerr, ok := errors.AsType[*launcher.LaunchError](err)
	if !ok || lerr.Path != path || strings.Contains(err.Error(), "/proc/self/fd") || !strings.Contains(err.Error(), "built for "+arch) {
		t.Errorf("launch of a sealed copy: %v; want its file %s named, and its architecture", err, path)
	}
}

// TestOutputTailHasStdout: a VM that gives its reason on stdout and exits
// before its handshake is heard: the error's last lines hold stdout's and
// stderr's, marked by stream (two readers: their order is not asserted).
func TestOutputTailHasStdout(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "quitter")
	body := "#!/bin/sh\necho 'failed to set fd limit: operation not permitted'\necho 'bye' >&2\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLauncher(t, launcher.Config{HandshakeTimeout: time.Hour})
	_, err := l.Launch(t.Context(), exec.Command(script))
	lerr, ok := errors.AsType[*launcher.LaunchError](err)
	if !ok || !errors.Is(err, vmre.ErrProcessNotFound) {
		t.Fatalf("err = %v; want the VM's exit before its handshake", err)
	}
	want := []string{"stdout: failed to set fd limit: operation not permitted", "stderr: bye"}
	if !slices.Equal(slices.Sorted(slices.Values(lerr.Output)), slices.Sorted(slices.Values(want))) || !slices.Equal(lerr.Stderr, []string{"bye"}) {
		t.Errorf("Output %q, Stderr %q; want %q and the stderr line alone", lerr.Output, lerr.Stderr, want)
	}
	if !strings.Contains(err.Error(), "last output lines of the VM:\n\t") || !strings.Contains(err.Error(), "\tstdout: failed to set fd limit") {
		t.Errorf("error text:\n%s\nwant the stdout line marked", err)
	}
}
