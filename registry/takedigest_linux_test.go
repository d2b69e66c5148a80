package registry_test

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre/registry"
)

// started runs cmd until the test ends, its standard input a pipe that
// keeps it running (hashvm -wait), and returns once it has written its line.
func started(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// takeDigest calls TakeDigest and waits for its result.
func takeDigest(t *testing.T, r *registry.Registry, vm *registry.VM, pid int) (registry.Digest, error) {
	t.Helper()
	type result struct {
		d   registry.Digest
		err error
	}
	done := make(chan result, 1)
	r.TakeDigest(vm, pid, func(d registry.Digest, err error) { done <- result{d, err} })
	select {
	case res := <-done:
		return res.d, res.err
	case <-t.Context().Done():
		t.Fatal("TakeDigest never called done")
	}
	panic("unreachable")
}

// TestTakeDigest: an unpinned VM's digest, unknown after the load, is taken
// from a process that runs it; a process that runs something else (a
// script's interpreter) gives none, and a closed registry takes none.
func TestTakeDigest(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "alpha", elf, 0o755)
	writeFile(t, dir, "beta", []byte("#!/bin/sh\necho beta\nexec cat\n"), 0o755)
	r, report := load(t, registry.Config{Dir: dir})
	noProblems(t, report)
	alpha, beta := mustLookup(t, r, "alpha"), mustLookup(t, r, "beta")
	if alpha.DigestKnown() {
		t.Fatalf("alpha's digest is known after the load: %s", alpha.Digest())
	}

	cmd := started(t, alpha.Command("-wait"))
	d, err := takeDigest(t, r, alpha, cmd.Process.Pid)
	if err != nil || d != digestOf(elf) {
		t.Errorf("TakeDigest(alpha) = %s, %v; want %s", d, err, digestOf(elf))
	}
	if !alpha.DigestKnown() || alpha.Digest() != digestOf(elf) {
		t.Errorf("alpha's digest after TakeDigest: %s (known %v); want %s", alpha.Digest(), alpha.DigestKnown(), digestOf(elf))
	}
	// Known: no process needed.
	if d, err := takeDigest(t, r, alpha, 0); err != nil || d != digestOf(elf) {
		t.Errorf("TakeDigest(alpha) again = %s, %v", d, err)
	}

	// A script runs as its interpreter: /proc/PID/exe is not the VM's file.
	sh := started(t, beta.Command())
	if d, err := takeDigest(t, r, beta, sh.Process.Pid); err == nil {
		t.Errorf("TakeDigest(beta) from its interpreter = %s; want an error", d)
	}
	if beta.DigestKnown() {
		t.Errorf("beta's digest is known after a failed TakeDigest: %s", beta.Digest())
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := takeDigest(t, r, beta, sh.Process.Pid); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("TakeDigest on a closed registry: %v; want fs.ErrClosed", err)
	}
}

// TestCopyFromProcess: the bytes a process runs are copied from it after
// its file was replaced by a rename (the old bytes are nowhere else); a
// process that runs something else (a script's interpreter) gives none.
func TestCopyFromProcess(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "alpha", elf, 0o755)
	writeFile(t, dir, "beta", []byte("#!/bin/sh\necho beta\nexec cat\n"), 0o755)
	r, report := load(t, registry.Config{Dir: dir})
	noProblems(t, report)
	alpha, beta := mustLookup(t, r, "alpha"), mustLookup(t, r, "beta")
	cmd := started(t, alpha.Command("-wait"))
	// A new version renamed over the file: the old one's inode lives on in
	// the process alone (its change time changed, not its bytes).
	tmp := writeFile(t, dir, ".alpha.new", otherELF(t), 0o755)
	if err := os.Rename(tmp, filepath.Join(dir, "alpha")); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	d, err := alpha.CopyFromProcess(cmd.Process.Pid, &b)
	if err != nil || d != digestOf(elf) || !bytes.Equal(b.Bytes(), elf) || alpha.Digest() != d {
		t.Errorf("CopyFromProcess(alpha) = %s, %v, %d bytes; want the old bytes, %s", d, err, b.Len(), digestOf(elf))
	}
	if _, err := alpha.CopyTo(&b); !errors.Is(err, registry.ErrChanged) {
		t.Errorf("CopyTo(alpha) from its replaced file: %v; want ErrChanged", err)
	}
	sh := started(t, beta.Command())
	if _, err := beta.CopyFromProcess(sh.Process.Pid, &b); !errors.Is(err, registry.ErrChanged) {
		t.Errorf("CopyFromProcess(beta) from its interpreter: %v; want ErrChanged", err)
	}
}
