//go:build linux

package node

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/registry"
)

// TestKeptCopyRunsWhileForking: a copy the store has just kept runs at
// once, while other goroutines fork and exec processes without a pause (a
// node launching its other VMs): no process forked during the copy holds
// it open for writing, which would make its exec fail with "text file
// busy" and the version look bad.
func TestKeptCopyRunsWhileForking(t *testing.T) {
	t.Parallel()
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	b, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, make([]byte, 3*copyChunk)...) // an ELF runs with bytes after it: several writes a copy
	dir := t.TempDir()
	if err := vmretest.WriteExecutable(filepath.Join(dir, "alpha"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	r, _, err := registry.Load(registry.Config{Dir: dir, Logger: vmretest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vm, ok := r.Lookup("alpha")
	if !ok {
		t.Fatal("no VM alpha")
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				exec.Command(truePath).Run()
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	const copies = 40
	busy := 0
	for i := range copies {
		s := &store{dir: t.TempDir()}
		d, err := s.keep(ctx, "alpha", vm, 0)
		if err != nil {
			t.Fatalf("keep %d: %v", i, err)
		}
		if err := exec.Command(s.path("alpha", d)).Run(); errors.Is(err, syscall.ETXTBSY) {
			busy++
		} else if err != nil {
			t.Fatalf("the copy %d: %v", i, err)
		}
	}
	if busy > 0 {
		t.Errorf("%d of %d copies were busy (ETXTBSY) when they ran", busy, copies)
	}
}

// A copy a killed node left under its temporary name is removed when the
// store opens; the copies kept are not.
func TestOpenStoreRemovesStaleCopies(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, versionsDir, "alpha")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, kept := filepath.Join(dir, copyPrefix+"123"), filepath.Join(dir, "0123abcd")
	for _, path := range []string{stale, kept} {
		if err := os.WriteFile(path, []byte("bytes"), 0o500); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := openStore(data); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale copy: %v; want it removed", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the kept copy: %v; want it kept", err)
	}
}
