package registry_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/registry"
)

// TestRemoteDeclarations: NAME.remote declares a remote VM, with this
// release's protocol version unless it names one; a malformed one, or one
// that names a VM of the directory, is refused and skipped.
func TestRemoteDeclarations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "alpha", script("alpha"), 0o755)
	writeFile(t, dir, "far.remote", []byte("{}\n"), 0o644)
	writeFile(t, dir, "farther.remote", []byte(`{"protocol_version": 2}`), 0o644)
	writeFile(t, dir, "bad.remote", []byte(`{"protocol_version": "two", "x": 1}`), 0o644)
	writeFile(t, dir, "alpha.remote", []byte(`{}`), 0o644)
	_, report := load(t, registry.Config{Dir: dir})
	want := []registry.Remote{
		{ID: "far", File: "far.remote", ProtocolVersion: vmre.ProtocolVersion},
		{ID: "farther", File: "farther.remote", ProtocolVersion: 2},
	}
	if !slices.Equal(report.Remotes, want) {
		t.Errorf("Remotes %+v; want %+v", report.Remotes, want)
	}
	kinds := map[string]string{}
	for _, p := range report.Failed {
		kinds[p.Entry] = p.Kind.String()
		if !errors.Is(p, vmre.ErrInvalidConfig) {
			t.Errorf("%s: %v does not match ErrInvalidConfig", p.Entry, p)
		}
	}
	if kinds["bad.remote"] != "malformed" || kinds["alpha.remote"] != "name collision" {
		t.Errorf("refused %v; want bad.remote malformed, alpha.remote a collision", kinds)
	}
	if got := ids(report.Added); !slices.Equal(got, []string{"alpha"}) {
		t.Errorf("VMs %v; want alpha alone", got)
	}
}
