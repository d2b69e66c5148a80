//go:build unix

package registry_test

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/registry"
)

func TestPins(t *testing.T) {
	t.Parallel()
	elf, other := hashvmBytes(t), otherELF(t)

	t.Run("match runs", func(t *testing.T) {
		t.Parallel()
		dir, etc := t.TempDir(), t.TempDir()
		writeFile(t, dir, "alpha", elf, 0o755)
		writeFile(t, dir, "beta.sh", script("beta"), 0o755)
		// Text and binary mode, a comment, a blank line, a path prefix.
		pins := writeFile(t, etc, "pins.sha256", fmt.Appendf(nil, "# pinned VMs\n%s  %s\n\n%s *plugins/beta.sh\n",
			digestOf(elf), "alpha", digestOf(script("beta"))), 0o644)
		r, report := load(t, registry.Config{Dir: dir, Pins: pins, RequirePins: true})
		noProblems(t, report)
		for _, v := range r.VMs() {
			if !v.Pinned() || v.Sealed() != (runtime.GOOS == "linux") {
				t.Errorf("%s: pinned %v, sealed %v", v.ID(), v.Pinned(), v.Sealed())
			}
		}
		// hashvm prints the digest of the bytes it runs from, and that it
		// inherited no memfd.
		if got, want := run(t, mustLookup(t, r, "alpha").Command("x")), elfOutput(elf, "x"); got != want {
			t.Errorf("alpha printed %q, want %q", got, want)
		}
		if got := run(t, mustLookup(t, r, "beta").Command("x")); got != "beta x\n" {
			t.Errorf("beta printed %q", got)
		}
	})

	t.Run("mismatch refused with both digests", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, dir, "alpha", elf, 0o755)
		writeFile(t, dir, "beta", script("beta"), 0o755) // unpinned, not required
		pins := pinsFile(t, t.TempDir(), map[string][]byte{"alpha": other})
		r, report := load(t, registry.Config{Dir: dir, Pins: pins})

		p := failed(t, report)["alpha"]
		isKind(t, p, "alpha", "pin mismatch", vmre.ErrPinMismatch)
		var mismatch *registry.PinMismatchError
		if !errors.As(p, &mismatch) {
			t.Fatalf("%v is no *PinMismatchError", p)
		}
		if mismatch.File != "alpha" || mismatch.Pinned != digestOf(other) || mismatch.Actual != digestOf(elf) {
			t.Errorf("mismatch %+v", mismatch)
		}
		for _, d := range []registry.Digest{digestOf(other), digestOf(elf)} {
			if !strings.Contains(p.Error(), d.String()) {
				t.Errorf("%q does not hold digest %s", p.Error(), d)
			}
		}
		if got := ids(r.VMs()); !slices.Equal(got, []string{"beta"}) {
			t.Errorf("VMs %v, want [beta]", got)
		}
		if mustLookup(t, r, "beta").Pinned() {
			t.Error("beta has no pin but is pinned")
		}
	})

	t.Run("pinned name with no file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, dir, "alpha", script("alpha"), 0o755)
		pins := pinsFile(t, t.TempDir(), map[string][]byte{"alpha": script("alpha"), "gone": elf})
		r, report := load(t, registry.Config{Dir: dir, Pins: pins})
		isKind(t, failed(t, report)["gone"], "gone", "missing file", fs.ErrNotExist)
		mustLookup(t, r, "alpha")
	})

	t.Run("required pin missing", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, dir, "alpha", script("alpha"), 0o755)
		writeFile(t, dir, "beta", script("beta"), 0o755)
		pins := pinsFile(t, t.TempDir(), map[string][]byte{"alpha": script("alpha")})
		r, report := load(t, registry.Config{Dir: dir, Pins: pins, RequirePins: true})
		p := failed(t, report)["beta"]
		isKind(t, p, "beta", "no pin", vmre.ErrInvalidConfig)
		// The error gives the line to add.
		if line := digestOf(script("beta")).String() + "  beta"; p != nil && !strings.Contains(p.Error(), line) {
			t.Errorf("%q does not give the pin line %q", p.Error(), line)
		}
		if got := ids(r.VMs()); !slices.Equal(got, []string{"alpha"}) {
			t.Errorf("VMs %v, want [alpha]", got)
		}
	})

	t.Run("malformed lines", func(t *testing.T) {
		t.Parallel()
		dir, etc := t.TempDir(), t.TempDir()
		writeFile(t, dir, "alpha", script("alpha"), 0o755)
		good := digestOf(script("alpha"))
		pins := writeFile(t, etc, "pins.sha256", fmt.Appendf(nil,
			"%s  alpha\nnot a pin\n%s alpha\n%s  beta\n%s  alpha\n%s  alpha\n",
			good, good, strings.Repeat("z", 64), digestOf(elf), good), 0o644)
		r, report := load(t, registry.Config{Dir: dir, Pins: pins})
		problems := failed(t, report)
		for _, n := range []int{2, 3, 4, 5} { // line 5 pins alpha again, to another digest
			entry := fmt.Sprintf("%s:%d", pins, n)
			isKind(t, problems[entry], entry, "malformed", vmre.ErrInvalidConfig)
		}
		if len(problems) != 4 {
			t.Errorf("problems: %v", report.Err())
		}
		if v := mustLookup(t, r, "alpha"); !v.Pinned() { // by its first pin
			t.Error("alpha is not pinned")
		}
	})

	t.Run("unreadable pins file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, dir, "alpha", script("alpha"), 0o755)
		pins := filepath.Join(t.TempDir(), "none")
		r, report := load(t, registry.Config{Dir: dir, Pins: pins})
		problems := failed(t, report)
		isKind(t, problems[pins], pins, "unreadable", fs.ErrNotExist)
		// Nothing can be verified: nothing loads, pins required or not.
		isKind(t, problems["alpha"], "alpha", "no pin", fs.ErrNotExist)
		if len(r.VMs()) != 0 {
			t.Errorf("VMs %v loaded without their pins", ids(r.VMs()))
		}
	})
}
