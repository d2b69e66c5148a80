package registry_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/registry"
)

// TestPinnedFileReplaced replaces a pinned file after the registry checked
// it, by a rename over it and by a rewrite in place, and runs the VM: it
// must run the bytes that were checked, never the new ones.
func TestPinnedFileReplaced(t *testing.T) {
	t.Parallel()
	elf, other := hashvmBytes(t), otherELF(t)
	kinds := []struct {
		name     string
		old, new []byte
		want     string // what the old bytes print with the argument x
	}{
		{"elf", elf, other, elfOutput(elf, "x")},
		{"script", script("old"), script("new"), "old x\n"},
	}
	replacements := map[string]func(t *testing.T, path string, data []byte){
		"rename over": func(t *testing.T, path string, data []byte) {
			tmp := writeFile(t, filepath.Dir(path), ".new", data, 0o755)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		},
		"rewrite in place": func(t *testing.T, path string, data []byte) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
	}
	for _, k := range kinds {
		for how, replace := range replacements {
			t.Run(k.name+"/"+how, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				path := writeFile(t, dir, "vm", k.old, 0o755)
				pins := pinsFile(t, t.TempDir(), map[string][]byte{"vm": k.old})
				r, report := load(t, registry.Config{Dir: dir, Pins: pins, RequirePins: true})
				noProblems(t, report)
				v := mustLookup(t, r, "vm")

				early := v.Command("x") // made before the file changes, started after
				replace(t, path, k.new)
				if got := run(t, exec.Command(path, "x")); got == k.want {
					t.Fatalf("the file still prints %q: it was not replaced", got)
				}
				if got := run(t, early); got != k.want {
					t.Errorf("a command made before the change printed %q, want %q", got, k.want)
				}
				if got := run(t, v.Command("x")); got != k.want {
					t.Errorf("a command made after the change printed %q, want %q", got, k.want)
				}

				// A reload sees the change and refuses it; the VM that left
				// the registry still runs the checked bytes.
				report, err := r.Reload()
				if err != nil {
					t.Fatal(err)
				}
				p := failed(t, report)["vm"]
				isKind(t, p, "vm", "pin mismatch", nil)
				var mismatch *registry.PinMismatchError
				if errors.As(p, &mismatch) && (mismatch.Actual != digestOf(k.new) || mismatch.Pinned != digestOf(k.old)) {
					t.Errorf("mismatch %+v", mismatch)
				}
				if got := run(t, v.Command("x")); got != k.want {
					t.Errorf("after the reload the old VM printed %q, want %q", got, k.want)
				}
			})
		}
	}
}

// TestSealed: a script's image, which the script holds as its descriptor
// 3, cannot be written, truncated or grown through it.
func TestSealed(t *testing.T) {
	t.Parallel()
	body := []byte(`#!/bin/sh
echo tamper >&3 2>/dev/null && echo wrote || echo write refused
echo tamper 2>/dev/null >/proc/self/fd/3 && echo truncated || echo truncate refused
echo tamper 2>/dev/null >>/proc/self/fd/3 && echo appended || echo append refused
`)
	dir := t.TempDir()
	writeFile(t, dir, "vm", body, 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"vm": body})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)
	v := mustLookup(t, r, "vm")
	const want = "write refused\ntruncate refused\nappend refused\n"
	for range 2 { // the second run finds the same bytes
		if got := run(t, v.Command()); got != want {
			t.Errorf("printed %q, want %q", got, want)
		}
	}
}

// TestCommand checks what Command sets and leaves to the launcher.
func TestCommand(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "elf", elf, 0o755)
	writeFile(t, dir, "script", script("s"), 0o755)
	writeFile(t, dir, "plain", script("p"), 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"elf": elf, "script": script("s")})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)

	for _, tc := range []struct {
		id, path string
		extra    int
	}{
		{"elf", "/proc/self/fd/", 0},
		{"script", "/proc/self/fd/3", 1},
		{"plain", filepath.Join(dir, "plain"), 0},
	} {
		v := mustLookup(t, r, tc.id)
		cmd := v.Command("a", "b")
		if !strings.HasPrefix(cmd.Path, tc.path) || tc.path == "/proc/self/fd/" && cmd.Path == "/proc/self/fd/3" {
			t.Errorf("%s: Path %q, want %q...", tc.id, cmd.Path, tc.path)
		}
		if want := []string{v.Path(), "a", "b"}; strings.Join(cmd.Args, " ") != strings.Join(want, " ") {
			t.Errorf("%s: Args %q, want %q", tc.id, cmd.Args, want)
		}
		if len(cmd.ExtraFiles) != tc.extra {
			t.Errorf("%s: %d ExtraFiles, want %d", tc.id, len(cmd.ExtraFiles), tc.extra)
		}
		if cmd.Env != nil || cmd.SysProcAttr != nil || cmd.Stdin != nil || cmd.Stdout != nil || cmd.Stderr != nil ||
			cmd.Dir != "" || cmd.Err != nil || cmd.Cancel != nil || cmd.WaitDelay != 0 {
			t.Errorf("%s: Command set a field it leaves to the launcher: %+v", tc.id, cmd)
		}
	}

	// A closed VM's command fails at Start.
	v := mustLookup(t, r, "elf")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := v.Command()
	if err := cmd.Start(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Start of a closed VM's command: %v, want fs.ErrClosed", err)
		if err == nil {
			cmd.Wait()
		}
	}
}

// TestCommandWithExtraFiles: descriptors a launcher adds to a sealed ELF
// VM's command (a lease pipe, files of its own) become the child's 3, 4,
// ...; they must not take the number of the image that the command execs,
// or the child would exec one of them instead of the checked bytes.
func TestCommandWithExtraFiles(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "elf", elf, 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"elf": elf})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)
	cmd := mustLookup(t, r, "elf").Command("x")
	for range 32 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	if got, want := run(t, cmd), elfOutput(elf, "x"); got != want {
		t.Errorf("with 32 ExtraFiles the VM printed %q, want %q", got, want)
	}
}

// TestNoFDLeak counts the process's descriptors: one per sealed VM while
// it is loaded, none per launch, none left after Close. It does not run in
// parallel, so that no other test opens descriptors meanwhile.
func TestNoFDLeak(t *testing.T) {
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "elf", elf, 0o755)
	writeFile(t, dir, "script", script("s"), 0o755)
	writeFile(t, dir, "plain", script("p"), 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"elf": elf, "script": script("s")})
	cycle := func(check func(stage string, extra int)) {
		r, report, err := registry.Load(registry.Config{Dir: dir, Pins: pins})
		if err != nil {
			t.Fatal(err)
		}
		noProblems(t, report)
		check("loaded", 2)
		for range 3 {
			for _, v := range r.VMs() {
				run(t, v.Command())
			}
		}
		check("after 9 launches", 2)
		// A new version of the script: its old VM is kept until Close.
		newScript := script("s2")
		writeFile(t, dir, "script", newScript, 0o755)
		pinsFile(t, filepath.Dir(pins), map[string][]byte{"elf": elf, "script": newScript})
		report, err = r.Reload()
		if err != nil {
			t.Fatal(err)
		}
		noProblems(t, report)
		check("after a reload with a new version", 3)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		check("closed", 0)
		writeFile(t, dir, "script", script("s"), 0o755)
		pinsFile(t, filepath.Dir(pins), map[string][]byte{"elf": elf, "script": script("s")})
	}
	cycle(func(string, int) {}) // warm up: the runtime opens descriptors of its own once
	base := countFDs(t)
	cycle(func(stage string, extra int) {
		t.Helper()
		if got := countFDs(t); got != base+extra {
			t.Errorf("%s: %d descriptors, want %d + %d", stage, got, base, extra)
		}
	})
}

func countFDs(t *testing.T) int {
	t.Helper()
	n, ok := vmretest.OpenFDs()
	if !ok {
		t.Fatal("no /proc/self/fd")
	}
	return n
}
