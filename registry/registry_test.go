//go:build unix

package registry_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/registry"
)

// TestLoadDirectory loads a directory with good VMs and every kind of bad
// entry: the good ones load and run, each bad one is reported with its
// reason, directories and dotfiles are skipped, and nothing aborts.
func TestLoadDirectory(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir, etc := t.TempDir(), t.TempDir()
	writeFile(t, dir, "alpha", elf, 0o755)
	writeFile(t, dir, "beta.sh", script("beta"), 0o755)                // ID beta
	writeFile(t, dir, ".hidden", script("hidden"), 0o755)              // skipped
	writeFile(t, dir, "notes.txt", []byte("not a VM\n"), 0o644)        // not executable
	writeFile(t, dir, "gamma", script("gamma"), 0o755)                 // gamma and gamma.exe:
	writeFile(t, dir, "gamma.exe", script("gamma.exe"), 0o755)         // both claim ID gamma
	writeFile(t, dir, "delta-vm", script("delta"), 0o755)              // named by its alias
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil { // skipped, not descended
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub"), "inner", script("inner"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o755); err != nil { // opening it would block
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	aliases := writeFile(t, etc, "aliases.json", []byte(`{
		"alpha": ["a", "shared"],
		"beta":  ["b", "shared"],
		"delta": ["delta-vm"],
		"ghost": ["g"]
	}`), 0o644)

	skipped := &recorder{}
	r, report := load(t, registry.Config{Dir: dir, Aliases: aliases, Logger: slog.New(skipped)})

	if got, want := ids(r.VMs()), []string{"alpha", "beta", "delta"}; !slices.Equal(got, want) {
		t.Errorf("VMs %v, want %v", got, want)
	}
	if got := ids(report.Added); !slices.Equal(got, []string{"alpha", "beta", "delta"}) {
		t.Errorf("Added %v", got)
	}
	for name, want := range map[string]string{"alpha": "alpha", "a": "alpha", "beta": "beta", "b": "beta", "delta": "delta", "delta-vm": "delta"} {
		if v := mustLookup(t, r, name); v.ID() != want {
			t.Errorf("Lookup(%q) = %s, want %s", name, v.ID(), want)
		}
	}
	for _, name := range []string{"shared", "g", "ghost", "gamma", "notes", "hidden", ".hidden", "sub", "inner", "fifo", "beta.sh"} {
		if v, ok := r.Lookup(name); ok {
			t.Errorf("Lookup(%q) = %s, want none", name, v.ID())
		}
	}
	if got := mustLookup(t, r, "alpha").Aliases(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("alpha's aliases %v, want [a]", got)
	}

	problems := failed(t, report)
	isKind(t, problems["notes.txt"], "notes.txt", "not executable", fs.ErrPermission)
	isKind(t, problems["gamma"], "gamma", "name collision", vmre.ErrInvalidConfig)
	isKind(t, problems["gamma.exe"], "gamma.exe", "name collision", vmre.ErrInvalidConfig)
	isKind(t, problems["shared"], "shared", "duplicate alias", vmre.ErrInvalidConfig)
	isKind(t, problems["ghost"], "ghost", "unknown VM", vmre.ErrInvalidConfig)
	isKind(t, problems["fifo"], "fifo", "not a regular file", nil)
	isKind(t, problems["dangling"], "dangling", "unreadable", fs.ErrNotExist)
	if len(problems) != 7 {
		t.Errorf("%d problems, want 7: %v", len(problems), report.Err())
	}
	if p := problems["gamma"]; p != nil && p.ID != "gamma" {
		t.Errorf("gamma's problem names VM %q", p.ID)
	}

	if got, want := skipped.files(), []string{".hidden", "sub"}; !slices.Equal(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}

	// The good VMs run: a real ELF binary and a script.
	alpha := mustLookup(t, r, "a")
	if got, want := run(t, alpha.Command("x", "y")), elfOutput(elf, "x", "y"); got != want {
		t.Errorf("alpha printed %q, want %q", got, want)
	}
	// An unpinned VM's digest is not taken at load (TakeDigest takes it).
	if alpha.DigestKnown() || alpha.Digest() != (registry.Digest{}) || alpha.Size() != int64(len(elf)) || alpha.Pinned() || alpha.Sealed() {
		t.Errorf("alpha: digest %s (known %v) size %d pinned %v sealed %v", alpha.Digest(), alpha.DigestKnown(), alpha.Size(), alpha.Pinned(), alpha.Sealed())
	}
	if got := run(t, mustLookup(t, r, "b").Command("x")); got != "beta x\n" {
		t.Errorf("beta printed %q", got)
	}
	if got := run(t, mustLookup(t, r, "delta-vm").Command()); got != "delta\n" {
		t.Errorf("delta printed %q", got)
	}
}

// TestReload adds, changes and removes files between reloads.
func TestReload(t *testing.T) {
	t.Parallel()
	elf := hashvmBytes(t)
	dir := t.TempDir()
	writeFile(t, dir, "alpha", elf, 0o755)
	writeFile(t, dir, "beta", script("beta"), 0o755)
	r, report := load(t, registry.Config{Dir: dir})
	noProblems(t, report)
	alpha, beta := mustLookup(t, r, "alpha"), mustLookup(t, r, "beta")

	// A new file: added; the rest unchanged, the same VMs.
	writeFile(t, dir, "gamma", script("gamma"), 0o755)
	report, err := r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	noProblems(t, report)
	if got := ids(report.Added); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("Added %v, want [gamma]", got)
	}
	if !slices.Equal(report.Unchanged, []*registry.VM{alpha, beta}) {
		t.Errorf("Unchanged %v, want the VMs alpha and beta loaded first", ids(report.Unchanged))
	}
	if len(report.Changed) != 0 || len(report.Removed) != 0 {
		t.Errorf("Changed %v, Removed %v", report.Changed, ids(report.Removed))
	}
	if got := run(t, mustLookup(t, r, "gamma").Command()); got != "gamma\n" {
		t.Errorf("gamma printed %q", got)
	}

	// A changed file is a new version; a removed one leaves the registry.
	writeFile(t, dir, "beta", script("beta2"), 0o755)
	if err := os.Remove(filepath.Join(dir, "alpha")); err != nil {
		t.Fatal(err)
	}
	report, err = r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	noProblems(t, report)
	newBeta := mustLookup(t, r, "beta")
	if !slices.Equal(report.Added, []*registry.VM{newBeta}) || newBeta == beta {
		t.Errorf("Added %v, want a new beta", ids(report.Added))
	}
	if len(report.Changed) != 1 || report.Changed[0].Old != beta || report.Changed[0].New != newBeta {
		t.Errorf("Changed %v, want beta's old and new versions", report.Changed)
	}
	if newBeta.Size() != int64(len(script("beta2"))) || newBeta.DigestKnown() {
		t.Errorf("the new beta: size %d, digest known %v; want %d bytes, no digest before TakeDigest", newBeta.Size(), newBeta.DigestKnown(), len(script("beta2")))
	}
	if !slices.Equal(report.Removed, []*registry.VM{alpha}) {
		t.Errorf("Removed %v, want alpha", ids(report.Removed))
	}
	if got := ids(report.Unchanged); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("Unchanged %v, want [gamma]", got)
	}
	if _, ok := r.Lookup("alpha"); ok {
		t.Error("alpha is still found after its file was removed")
	}
	if got := ids(r.VMs()); !slices.Equal(got, []string{"beta", "gamma"}) {
		t.Errorf("VMs %v", got)
	}

	// A loaded VM whose file now fails leaves the registry, reported.
	writeFile(t, dir, "gamma", script("gamma"), 0o644)
	report, err = r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	isKind(t, failed(t, report)["gamma"], "gamma", "not executable", fs.ErrPermission)
	if len(report.Removed) != 0 {
		t.Errorf("Removed %v: a file that fails is not removed", ids(report.Removed))
	}
	if _, ok := r.Lookup("gamma"); ok {
		t.Error("gamma is still found after its file stopped loading")
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Reload after Close: %v, want fs.ErrClosed", err)
	}
}

// TestAliasesChange: an aliases file changed between reloads changes the
// names of an unchanged VM.
func TestAliasesChange(t *testing.T) {
	t.Parallel()
	dir, etc := t.TempDir(), t.TempDir()
	writeFile(t, dir, "alpha", script("alpha"), 0o755)
	aliases := writeFile(t, etc, "aliases.json", []byte(`{"alpha": ["one"]}`), 0o644)
	r, report := load(t, registry.Config{Dir: dir, Aliases: aliases})
	noProblems(t, report)
	alpha := mustLookup(t, r, "one")

	writeFile(t, etc, "aliases.json", []byte(`{"alpha": ["two"]}`), 0o644)
	report, err := r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(report.Unchanged, []*registry.VM{alpha}) {
		t.Errorf("Unchanged %v", ids(report.Unchanged))
	}
	if _, ok := r.Lookup("one"); ok {
		t.Error("the old alias still names alpha")
	}
	if mustLookup(t, r, "two") != alpha || !slices.Equal(alpha.Aliases(), []string{"two"}) {
		t.Errorf("alpha's aliases %v, want [two]", alpha.Aliases())
	}

	// A broken aliases file is reported; the VM loads under its ID.
	writeFile(t, etc, "aliases.json", []byte(`{"alpha": "two"}`), 0o644)
	report, err = r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	isKind(t, failed(t, report)[aliases], aliases, "malformed", vmre.ErrInvalidConfig)
	if mustLookup(t, r, "alpha") != alpha {
		t.Error("alpha did not stay loaded")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]registry.Config{
		"no directory":           {},
		"pins required, no file": {Dir: t.TempDir(), RequirePins: true},
	} {
		if _, _, err := registry.Load(cfg); !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, _, err := registry.Load(registry.Config{Dir: filepath.Join(t.TempDir(), "none")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v, want fs.ErrNotExist", err)
	}
}

// TestConcurrentUse runs Reload, Lookup, VMs and Command at once (for the
// race detector).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "alpha", script("alpha"), 0o755)
	pins := pinsFile(t, t.TempDir(), map[string][]byte{"alpha": script("alpha")})
	r, report := load(t, registry.Config{Dir: dir, Pins: pins})
	noProblems(t, report)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if _, err := r.Reload(); err != nil {
					t.Error(err)
					return
				}
				v, ok := r.Lookup("alpha")
				if !ok || len(r.VMs()) != 1 {
					t.Error("alpha went missing")
					return
				}
				if cmd := v.Command(); cmd.Err != nil {
					t.Error(cmd.Err)
				}
			}
		})
	}
	wg.Wait()
}

// recorder is a slog handler that keeps the "file" attribute of each
// debug record.
type recorder struct {
	mu    sync.Mutex
	names []string
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "file" && rec.Level == slog.LevelDebug {
			h.mu.Lock()
			h.names = append(h.names, a.Value.String())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

func (h *recorder) files() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(slices.Values(h.names))
}

// TestBadNames loads a directory whose files have names that cannot name
// a VM: bytes that are not UTF-8, a terminal escape, a newline. Each is
// refused with a problem that names it escaped, the good VM loads, and
// every text of the report is valid UTF-8 without control characters. So
// are the aliases file's names.
func TestBadNames(t *testing.T) {
	t.Parallel()
	dir, etc := t.TempDir(), t.TempDir()
	writeFile(t, dir, "good", script("good"), 0o755)
	bad := map[string]string{ // file name -> the entry that reports it
		"bad\xffname":    `bad\xffname`,
		"esc\x1b[31mRED": `esc\x1b[31mRED`,
		"evil\nfake":     `evil\nfake`,
		"bidi\u202eexe":  `bidi\u202eexe`,
	}
	for name := range bad {
		writeFile(t, dir, name, script("bad"), 0o755)
	}
	aliases := writeFile(t, etc, "aliases.json", []byte(`{"good": ["g", "red\u001b[31m"], "x\u0007": ["y"]}`), 0o644)
	r, report := load(t, registry.Config{Dir: dir, Aliases: aliases})

	if got := ids(r.VMs()); !slices.Equal(got, []string{"good"}) {
		t.Errorf("VMs %v, want [good]", got)
	}
	if got := mustLookup(t, r, "good").Aliases(); !slices.Equal(got, []string{"g"}) {
		t.Errorf("good's aliases %v, want [g]", got)
	}
	problems := failed(t, report)
	for name, entry := range bad {
		p := problems[entry]
		isKind(t, p, entry, "bad name", vmre.ErrInvalidConfig)
		if p != nil && !strings.Contains(p.Error(), "the file name "+entry+" ") {
			t.Errorf("%q: %v does not name the file as %s", name, p, entry)
		}
	}
	isKind(t, problems[`red\x1b[31m`], "alias red\x1b[31m", "bad name", vmre.ErrInvalidConfig)
	isKind(t, problems[`x\a`], "VM ID x\a", "bad name", vmre.ErrInvalidConfig)
	for _, p := range report.Failed {
		for _, s := range []string{p.Entry, p.ID, p.Error()} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
				t.Errorf("problem text %q is not printable UTF-8", s)
			}
		}
	}
	if len(report.Failed) != len(bad)+2 {
		t.Errorf("%d problems, want %d: %v", len(report.Failed), len(bad)+2, report.Failed)
	}
}
