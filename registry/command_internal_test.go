//go:build unix

package registry

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre"
)

// TestCheckThenExec tests the fallback of platforms without sealed copies:
// a pinned file is hashed again when its command is made.
func TestCheckThenExec(t *testing.T) {
	t.Parallel()
	old, changed := []byte("#!/bin/sh\necho old\n"), []byte("#!/bin/sh\necho new\n")
	path := filepath.Join(t.TempDir(), "vm")
	if err := os.WriteFile(path, old, 0o755); err != nil {
		t.Fatal(err)
	}
	v := &VM{id: "vm", file: "vm", path: path, digest: sha256.Sum256(old), pinned: true}

	out, err := checkThenExec(v, nil).Output()
	if err != nil || string(out) != "old\n" {
		t.Fatalf("unchanged file: %q, %v", out, err)
	}
	if err := os.WriteFile(path, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := checkThenExec(v, nil)
	var mismatch *PinMismatchError
	if !errors.As(cmd.Err, &mismatch) || mismatch.Actual != sha256.Sum256(changed) || !errors.Is(cmd.Err, vmre.ErrPinMismatch) {
		t.Fatalf("changed file: Err %v, want a *PinMismatchError", cmd.Err)
	}
	if err := cmd.Start(); !errors.Is(err, vmre.ErrPinMismatch) {
		t.Errorf("Start: %v, want the pin mismatch", err)
	}
}
