package registry_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vmre/vmre/registry"
)

// TestOpenCopy: a copy of a VM's bytes makes a VM that runs them, pinned
// (sealed on Linux) or not; a copy whose bytes are not its digest's, or
// that is missing, makes none, and says so.
func TestOpenCopy(t *testing.T) {
	t.Parallel()
	elf := otherELF(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "copy", elf, 0o500)
	for _, pinned := range []bool{false, true} {
		v, err := registry.OpenCopy(registry.Copy{ID: "vm", File: "vm.exe", Path: path, Digest: digestOf(elf), Pinned: pinned})
		if err != nil {
			t.Fatal(err)
		}
		if v.ID() != "vm" || v.File() != "vm.exe" || v.Digest() != digestOf(elf) || v.Pinned() != pinned || v.Size() != int64(len(elf)) {
			t.Errorf("pinned %t: the VM of the copy: id %s, file %s, digest %s, pinned %t, size %d", pinned, v.ID(), v.File(), v.Digest(), v.Pinned(), v.Size())
		}
		if sealed := pinned && runtime.GOOS == "linux"; v.Sealed() != sealed {
			t.Errorf("pinned %t: Sealed() = %t, want %t", pinned, v.Sealed(), sealed)
		}
		if runtime.GOOS == "linux" || runtime.GOOS == "darwin" || runtime.GOOS == "freebsd" {
			if got, want := run(t, v.Command("a")), elfOutput(elf, "a"); !strings.HasPrefix(got, strings.TrimSuffix(want, "memfds=0\n")) {
				t.Errorf("pinned %t: the copy's VM printed %q, want %q", pinned, got, want)
			}
		}
		if err := v.Close(); err != nil {
			t.Error(err)
		}
	}

	// A damaged copy: refused, with both digests.
	_, err := registry.OpenCopy(registry.Copy{ID: "vm", File: "vm", Path: path, Digest: digestOf(hashvmBytes(t))})
	if err == nil || !strings.Contains(err.Error(), digestOf(elf).String()) || !strings.Contains(err.Error(), "changed or damaged") {
		t.Errorf("a copy of other bytes: %v; want a refusal naming both digests", err)
	}
	// A missing copy.
	_, err = registry.OpenCopy(registry.Copy{ID: "vm", File: "vm", Path: filepath.Join(dir, "none"), Digest: digestOf(elf)})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing copy: %v; want fs.ErrNotExist", err)
	}
}

// TestOpen: a VM's reader reads the bytes of its digest: a sealed VM's
// from its seal, after its file was rewritten in place too; an unsealed
// one's from its file. A closed VM has none.
func TestOpen(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "vm", elf, 0o755)
	writeFile(t, dir, "free", elf, 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"vm": elf})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)
	if d, ok := r.Pin("vm"); !ok || d != digestOf(elf) {
		t.Errorf("Pin(vm) = %s, %t; want the pinned digest", d, ok)
	}
	if _, ok := r.Pin("free"); ok {
		t.Error("Pin(free): a file without a pin has one")
	}
	readAll := func(v *registry.VM) []byte {
		t.Helper()
		rc, err := v.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pinned, free := mustLookup(t, r, "vm"), mustLookup(t, r, "free")
	if digestOf(readAll(free)) != free.Digest() {
		t.Error("the unpinned VM's reader reads other bytes than its file's")
	}
	if runtime.GOOS == "linux" {
		if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if digestOf(readAll(pinned)) != pinned.Digest() {
		t.Error("the pinned VM's reader reads other bytes than its digest's")
	}
	if err := free.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := free.Open(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Open of a closed VM: %v; want fs.ErrClosed", err)
	}
}
