package atomicfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/vmre/vmre/internal/atomicfile"
)

func TestWriteCreatesAndReplaces(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "deeper")
	path := filepath.Join(dir, "stopped.json")
	if err := atomicfile.Write(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "one\n")
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v; want 0600", fi.Mode().Perm())
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
			t.Errorf("the directory made has mode %v; want 0700", fi.Mode().Perm())
		}
	}
	if err := atomicfile.Write(path, []byte("two, longer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "two, longer\n")
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v after a rewrite with 0644", fi.Mode().Perm())
		}
	}
	wantEntries(t, dir, "stopped.json")
}

// TestWriteRemovesWhatACrashLeft: a temporary file left by a Write killed
// before its rename is removed by the next Write of the same name, and
// only of that name (the glob is escaped).
func TestWriteRemovesWhatACrashLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{".a*.tmp-1", ".a.tmp-123", ".a.tmp-", ".b.tmp-9", "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, "a"), []byte("whole"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "a"), "whole")
	// ".a*.tmp-1" belongs to a file named "a*", ".b.tmp-9" to "b".
	wantEntries(t, dir, ".a*.tmp-1", ".b.tmp-9", "a")
	if err := atomicfile.Write(filepath.Join(dir, "a*"), []byte("star"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, dir, ".b.tmp-9", "a", "a*")
}

// TestWriteFailureKeepsTheOldContent: a Write that cannot complete (here
// its target is a directory, so the rename fails) leaves what was there
// and no temporary file.
func TestWriteFailureKeepsTheOldContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "engine.pem")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "inside"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(target, []byte("new"), 0o600); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	wantFile(t, filepath.Join(target, "inside"), "kept")
	wantEntries(t, dir, "engine.pem")
	// A directory that cannot be made is an error too, and makes nothing.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(blocker, "x"), []byte("x"), 0o600); err == nil {
		t.Error("Write under a regular file succeeded")
	}
}

// TestReadersSeeWholeFiles: a reader racing with writes sees the old
// content or the new one, never a torn or empty file.
func TestReadersSeeWholeFiles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens")
	contents := [][]byte{bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 3<<10)}
	if err := atomicfile.Write(path, contents[0], 0o600); err != nil {
		t.Fatal(err)
	}
	const writes = 100
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range writes {
			if err := atomicfile.Write(path, contents[(i+1)%2], 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	})
	reads := 0
	for stop := false; !stop; reads++ {
		select {
		case <-done:
			stop = true
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if !bytes.Equal(b, contents[0]) && !bytes.Equal(b, contents[1]) {
			t.Fatalf("read %d: %d bytes that are neither version", reads, len(b))
		}
	}
	wg.Wait()
	wantEntries(t, filepath.Dir(path), "tokens")
}

func TestRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "far.token")
	if err := atomicfile.Write(path, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Remove(path); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, dir)
	if err := atomicfile.Remove(path); err != nil {
		t.Errorf("Remove of a missing file: %v; want nil", err)
	}
}

func wantFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q; want %q", path, b, want)
	}
}

func wantEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %q; want %q", dir, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s holds %q; want %q", dir, got, want)
		}
	}
}
