package registry_test

import (
	"bytes"
	"errors"
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

// TestCopyTo: an unpinned VM's digest, unknown after its load, is known
// once its bytes are copied; a file rewritten in place or replaced since
// the load gives no copy (ErrChanged), a sealed VM's copy is its seal's,
// whatever its file holds. The pins file's pins are told.
func TestCopyTo(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	pinnedPath := writeFile(t, dir, "vm", elf, 0o755)
	freePath := writeFile(t, dir, "free", elf, 0o755)
	writeFile(t, dir, "other", elf, 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"vm": elf})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)
	if d, ok := r.Pin("vm"); !ok || d != digestOf(elf) {
		t.Errorf("Pin(vm) = %s, %t; want the pinned digest", d, ok)
	}
	if _, ok := r.Pin("free"); ok {
		t.Error("Pin(free): a file without a pin has one")
	}
	copyOf := func(v *registry.VM) ([]byte, registry.Digest, error) {
		t.Helper()
		var b bytes.Buffer
		d, err := v.CopyTo(&b)
		return b.Bytes(), d, err
	}
	pinned, free, other := mustLookup(t, r, "vm"), mustLookup(t, r, "free"), mustLookup(t, r, "other")
	if free.DigestKnown() {
		t.Fatal("an unpinned VM's digest is known after its load")
	}
	if b, d, err := copyOf(free); err != nil || d != digestOf(elf) || !bytes.Equal(b, elf) || !free.DigestKnown() || free.Digest() != d {
		t.Errorf("CopyTo(free): %s, %v, %d bytes, known %t", d, err, len(b), free.DigestKnown())
	}
	if id, _ := free.Identity(); id == "" {
		t.Error("an unpinned VM has no identity")
	}
	// Rewritten in place: the file is no longer the one loaded.
	if err := os.WriteFile(freePath, otherELF(t), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyOf(other); err != nil {
		t.Errorf("CopyTo(other), an unchanged file beside: %v", err)
	}
	writeFile(t, dir, "other", otherELF(t), 0o755)
	if _, _, err := copyOf(other); !errors.Is(err, registry.ErrChanged) {
		t.Errorf("CopyTo of a file rewritten since its load: %v; want ErrChanged", err)
	}
	if runtime.GOOS == "linux" {
		if err := os.WriteFile(pinnedPath, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if b, d, err := copyOf(pinned); err != nil || d != digestOf(elf) || !bytes.Equal(b, elf) {
		t.Errorf("CopyTo(pinned) after its file changed: %s, %v; want the sealed bytes", d, err)
	}
	if err := free.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyOf(free); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("CopyTo of a closed VM: %v; want fs.ErrClosed", err)
	}
}
