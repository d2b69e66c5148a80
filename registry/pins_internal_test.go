package registry

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePinLine(t *testing.T) {
	t.Parallel()
	d := Digest(sha256.Sum256([]byte("x")))
	for _, tc := range []struct {
		line, name string // name "" means malformed
	}{
		{d.String() + "  vm", "vm"},
		{d.String() + " *vm", "vm"},
		{strings.ToUpper(d.String()) + "  vm", "vm"},
		{d.String() + "  dir/sub/vm", "vm"},
		{d.String() + "  a name with spaces", "a name with spaces"},
		{`\` + d.String() + `  back\\slash\nnewline`, "back\\slash\nnewline"},
		{d.String() + " vm", ""},
		{d.String() + "\tvm", ""},
		{d.String() + "  ", ""},
		{d.String() + "  dir/", "dir"}, // filepath.Base drops the slash
		{d.String()[:63] + "  vm", ""},
		{"SHA256 (vm) = " + d.String(), ""},
	} {
		name, got, err := parsePinLine(tc.line)
		switch {
		case tc.name == "" && err == nil:
			t.Errorf("%q: parsed as %q, want an error", tc.line, name)
		case tc.name != "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.name != "" && (name != tc.name || got != d):
			t.Errorf("%q: %q %s, want %q %s", tc.line, name, got, tc.name, d)
		}
	}
}

// FuzzParsePins: any input parses without panicking, every pinned name is a
// base name, and a line written as sha256sum writes it reads back.
func FuzzParsePins(f *testing.F) {
	d := Digest(sha256.Sum256([]byte("x")))
	f.Add([]byte(d.String()+"  vm\n# c\n\n"+d.String()+" *other\n"), "vm")
	f.Add([]byte("garbage\n\\"+d.String()+"  a\\nb\n"), `a\b`)
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		set, _ := parsePins(data, "pins")
		for n := range set.byName {
			if n == "" || n == "." || n == ".." || n != filepath.Base(n) {
				t.Fatalf("pinned name %q is not a base name", n)
			}
		}
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, filepath.Separator) || strings.ContainsAny(name, "\r") || strings.HasPrefix(name, "#") {
			return
		}
		line := fmt.Sprintf("%s  %s\n", d, name)
		if strings.ContainsAny(name, "\\\n") {
			esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(name)
			line = fmt.Sprintf("\\%s  %s\n", d, esc)
		}
		set, problems := parsePins([]byte(line), "pins")
		if p, ok := set.byName[name]; !ok || p.digest != d || len(problems) != 0 {
			t.Fatalf("%q: read back %v, problems %v", line, set.byName, problems)
		}
	})
}
