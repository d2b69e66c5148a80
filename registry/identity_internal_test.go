package registry

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestIdentityProves: an identity proves a file unchanged when it is the
// same and was taken once the file's times were older than racyWindow.
func TestIdentityProves(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	old := fileID{dev: 1, ino: 2, size: 3, mtime: at.Add(-time.Hour).UnixNano(), ctime: at.Add(-time.Hour).UnixNano()}
	racy := old
	racy.ctime = at.Add(-time.Second).UnixNano() // changed within the window
	moved, grown, touched := old, old, old
	moved.ino++
	grown.size++
	touched.mtime++
	for _, c := range []struct {
		name  string
		taken fileID
		now   fileID
		want  bool
	}{
		{"same, old times", old, old, true},
		{"same, times within the window", racy, racy, false},
		{"another inode", old, moved, false},
		{"another size", old, grown, false},
		{"another mtime", old, touched, false},
		{"no identity", fileID{}, fileID{}, false},
	} {
		if got := (identity{id: c.taken, at: at}).proves(c.now); got != c.want {
			t.Errorf("%s: proves = %v; want %v", c.name, got, c.want)
		}
	}
}

// TestReloadRehashes: a load hashes each pinned file once, and no unpinned
// one; a reload hashes again only the pinned files whose identity changed,
// or could not prove them unchanged (taken within racyWindow of their
// writing); an unpinned file is never hashed, and a changed identity makes
// it a new version.
func TestReloadRehashes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pins := ""
	for i := range 4 {
		name := fmt.Sprintf("p%d", i)
		body := []byte("#!/bin/sh\necho " + name + "\n")
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
		pins += fmt.Sprintf("%x  %s\n", sha256.Sum256(body), name)
	}
	if err := os.WriteFile(filepath.Join(dir, "u"), []byte("#!/bin/sh\necho u\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pinsFile := filepath.Join(t.TempDir(), "pins")
	if err := os.WriteFile(pinsFile, []byte(pins), 0o644); err != nil {
		t.Fatal(err)
	}
	// The clock of the identities: at first the files were just written;
	// later they are an hour old.
	now := time.Now()
	clock := func() time.Time { return now }
	r, report, err := loadWith(Config{Dir: dir, Pins: pinsFile}, func() time.Time { return clock() })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := report.Err(); err != nil || len(report.Added) != 5 {
		t.Fatalf("load: %d added, %v", len(report.Added), err)
	}
	if n := r.hashed.Load(); n != 4 {
		t.Errorf("the load hashed %d files; want the 4 pinned ones", n)
	}
	u, _ := r.Lookup("u")

	reload := func(wantHashed int64, wantUnchanged []string) Report {
		t.Helper()
		before := r.hashed.Load()
		report, err := r.Reload()
		if err != nil || report.Err() != nil {
			t.Fatalf("reload: %v, %v", err, report.Err())
		}
		if n := r.hashed.Load() - before; n != wantHashed {
			t.Errorf("the reload hashed %d files; want %d", n, wantHashed)
		}
		var got []string
		for _, v := range report.Unchanged {
			got = append(got, v.ID())
		}
		if !slices.Equal(got, wantUnchanged) {
			t.Errorf("unchanged %v; want %v", got, wantUnchanged)
		}
		return report
	}
	all := []string{"p0", "p1", "p2", "p3", "u"}
	// Identities taken as the files were written prove nothing: the pinned
	// files are hashed again, found unchanged.
	reload(4, all)
	// An hour later, the identities taken by that reload prove them.
	now = now.Add(time.Hour)
	reload(4, all) // taken at the last reload, within the window of the writes
	now = now.Add(time.Hour)
	reload(0, all)
	// A touched pinned file is hashed again, and is unchanged; a touched
	// unpinned one, never hashed, is a new version.
	later := time.Now().Add(time.Minute)
	for _, name := range []string{"p2", "u"} {
		if err := os.Chtimes(filepath.Join(dir, name), later, later); err != nil {
			t.Fatal(err)
		}
	}
	report = reload(1, []string{"p0", "p1", "p2", "p3"})
	if len(report.Changed) != 1 || report.Changed[0].Old != u || report.Changed[0].New.DigestKnown() {
		t.Errorf("changed %v; want u, its digest unknown", report.Changed)
	}
}
