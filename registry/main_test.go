//go:build unix

package registry_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/registry"
)

// TestMain runs the tests, removes the VMs it built, and fails the package
// when a test leaves a goroutine behind.
func TestMain(m *testing.M) { vmretest.Main(m, nil, vmretest.RemoveDir(&builtDir)) }

// hashvm, built once per run: a real executable that prints its arguments
// and the digest of the bytes it runs from (testdata/hashvm).
var (
	buildOnce sync.Once
	builtDir  string
	hashvm    []byte
	buildErr  error
)

func hashvmBytes(t *testing.T) []byte {
	t.Helper()
	buildOnce.Do(func() {
		if builtDir, buildErr = os.MkdirTemp("", "vmre-registry-"); buildErr != nil {
			return
		}
		out := filepath.Join(builtDir, "hashvm")
		cmd := exec.Command("go", "build", "-o", out, "./testdata/hashvm")
		cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build testdata/hashvm: %w\n%s", err, b)
			return
		}
		hashvm, buildErr = os.ReadFile(out)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return hashvm
}

// otherELF is hashvm with bytes appended: it runs the same, but its digest,
// which it prints, differs.
func otherELF(t *testing.T) []byte {
	return append(bytes.Clone(hashvmBytes(t)), []byte("another version")...)
}

func script(word string) []byte {
	return []byte("#!/bin/sh\necho " + word + " \"$@\"\n")
}

func digestOf(b []byte) registry.Digest { return registry.Digest(sha256.Sum256(b)) }

// elfOutput is what hashvm prints when it runs the bytes b.
func elfOutput(b []byte, args ...string) string {
	return fmt.Sprintf("args=%s exe=%s memfds=0\n", strings.Join(args, ","), digestOf(b))
}

func writeFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	// Under the fork lock, and with its mode set on an existing file too: a
	// process forked meanwhile by a parallel test would hold the file open
	// for writing, and its exec would fail with "text file busy".
	if err := vmretest.WriteExecutable(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t *testing.T, cfg registry.Config) (*registry.Registry, registry.Report) {
	t.Helper()
	r, report, err := registry.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r, report
}

// run runs cmd and returns its stdout.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// A file written a moment ago may not run yet (text file busy): a
	// child that a parallel test forked meanwhile holds it open for
	// writing until its own exec closes it. Nothing tells when; start the
	// same command again until the kernel lets it, as Go's own tests do.
	deadline := time.Now().Add(vmretest.WaitTimeout)
	for errors.Is(err, syscall.ETXTBSY) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		again := exec.Command(cmd.Path, cmd.Args[1:]...)
		again.Env, again.Dir, again.ExtraFiles, again.SysProcAttr = cmd.Env, cmd.Dir, cmd.ExtraFiles, cmd.SysProcAttr
		stderr.Reset()
		again.Stderr = &stderr
		cmd = again
		out, err = cmd.Output()
	}
	if err != nil {
		t.Fatalf("run %s: %v\nstderr: %s", cmd.Args[0], err, stderr.Bytes())
	}
	return string(out)
}

func mustLookup(t *testing.T, r *registry.Registry, name string) *registry.VM {
	t.Helper()
	v, ok := r.Lookup(name)
	if !ok {
		t.Fatalf("Lookup(%q): not found; VMs: %v", name, ids(r.VMs()))
	}
	return v
}

func ids(vms []*registry.VM) []string {
	out := make([]string, len(vms))
	for i, v := range vms {
		out[i] = v.ID()
	}
	return out
}

// failed returns the problems of a report by entry, and fails the test if
// an entry has more than one.
func failed(t *testing.T, report registry.Report) map[string]*registry.Problem {
	t.Helper()
	out := map[string]*registry.Problem{}
	for _, p := range report.Failed {
		if out[p.Entry] != nil {
			t.Errorf("entry %q reported twice: %v; %v", p.Entry, out[p.Entry], p)
		}
		out[p.Entry] = p
	}
	return out
}

func noProblems(t *testing.T, report registry.Report) {
	t.Helper()
	if err := report.Err(); err != nil {
		t.Fatalf("problems: %v", err)
	}
}

// pinsFile writes a pins file of lines "HEX  NAME" for name, data pairs.
func pinsFile(t *testing.T, dir string, pins map[string][]byte) string {
	t.Helper()
	var b strings.Builder
	for name, data := range pins {
		fmt.Fprintf(&b, "%s  %s\n", digestOf(data), name)
	}
	return writeFile(t, dir, "pins.sha256", []byte(b.String()), 0o644)
}

// isKind checks the problem of entry: its kind by the name users read,
// and the cause its error matches.
func isKind(t *testing.T, p *registry.Problem, entry string, kind string, target error) {
	t.Helper()
	if p == nil {
		t.Errorf("%s: not reported", entry)
		return
	}
	if p.Kind.String() != kind {
		t.Errorf("%s: kind %v, want %v (%v)", entry, p.Kind, kind, p)
	}
	if target != nil && !errors.Is(p, target) {
		t.Errorf("%s: %v does not match %v", entry, p, target)
	}
}
