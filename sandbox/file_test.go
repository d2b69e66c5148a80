package sandbox_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/sandbox"
)

func limit(soft, hard uint64) *sandbox.Limit { return &sandbox.Limit{Soft: soft, Hard: hard} }

// A VM's policy is read over the default key by key; a list replaces the
// default's.
func TestParseFile(t *testing.T) {
	f, err := sandbox.ParseFile([]byte(`{
	  "default": {
	    "files": {"read": ["/opt/share"]},
	    "limits": {"open_files": 4096, "core": 0, "data": "2GiB"},
	    "user": "vmre-vm"
	  },
	  "vms": {
	    "timestampvm": {
	      "files": {"write": ["/srv/ts"]},
	      "network": {"connect": [9650, 8545]},
	      "limits": {"open_files": {"soft": 1024, "hard": "unlimited"}}
	    },
	    "subnetevm": {"files": {"read": []}, "network": {"unrestricted": true}, "landlock_abi": 4}
	  }
	}`))
	if err != nil {
		t.Fatal(err)
	}
	def := sandbox.Policy{Files: sandbox.Files{Read: []string{"/opt/share"}},
		Limits: sandbox.Limits{OpenFiles: limit(4096, 4096), Core: limit(0, 0), Data: limit(2<<30, 2<<30)}, User: "vmre-vm"}
	for _, tc := range []struct {
		names []string
		want  sandbox.Policy
	}{
		{nil, def},
		{[]string{"unknown"}, def},
		{[]string{"ts", "timestampvm"}, sandbox.Policy{ // by an alias
			Files:   sandbox.Files{Read: []string{"/opt/share"}, Write: []string{"/srv/ts"}},
			Network: sandbox.Network{Connect: []uint16{9650, 8545}},
			Limits:  sandbox.Limits{OpenFiles: limit(1024, sandbox.Unlimited), Core: limit(0, 0), Data: limit(2<<30, 2<<30)},
			User:    "vmre-vm"}},
		{[]string{"subnetevm"}, sandbox.Policy{Files: sandbox.Files{Read: []string{}}, Network: sandbox.Network{Unrestricted: true},
			Limits: def.Limits, User: "vmre-vm", LandlockABI: 4}},
	} {
		if got := f.Policy(tc.names...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Policy(%v):\n got %+v\nwant %+v", tc.names, got, tc.want)
		}
	}
	// Policies are copies: changing one changes no other.
	p := f.Policy("timestampvm")
	p.Files.Read[0] = "/changed"
	*p.Limits.Core = sandbox.Limit{Soft: 1, Hard: 1}
	if f.Policy().Files.Read[0] != "/opt/share" || f.Policy().Limits.Core.Hard != 0 {
		t.Error("a returned policy shares its slices or limits with the file")
	}
	var none *sandbox.File
	if !reflect.DeepEqual(none.Policy("x"), sandbox.Policy{}) {
		t.Error("a nil File's policy is not the default")
	}
}

// An unknown key is an error that names it, where it is, and the keys
// known there; so is every other bad value.
func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct {
		file, want string
	}{
		{`{"defaults": {}}`, `unknown key "defaults" (known: default, vms)`},
		{`{"default": {"file": {}}}`, `default: unknown key "file" (known: files, group, landlock_abi, limits, network, user)`},
		{`{"vms": {"ts": {"files": {"reed": []}}}}`, `vms.ts.files: unknown key "reed" (known: read, unrestricted, write)`},
		{`{"vms": {"ts": {"limits": {"open_file": 1}}}}`, `vms.ts.limits: unknown key "open_file"`},
		{`{"default": {"limits": {"core": {"soft": 0, "max": 0}}}}`, `default.limits.core: unknown key "max" (known: hard, soft)`},
		{`{"default": {"limits": {"core": {"soft": 0}}}}`, `default.limits.core: a limit written as an object needs both "soft" and "hard"`},
		{`{"default": {"limits": {"data": "2GB"}}}`, `default.limits.data: "2GB" is not a limit`},
		{`{"default": {"limits": {"data": -1}}}`, `default.limits.data: -1 is not a limit`},
		{`{"default": {"limits": {"core": {"soft": 10, "hard": 1}}}}`, `default: limits.core: the soft limit 10 is above the hard limit 1`},
		{`{"default": {"network": {"connect": [70000]}}}`, `default.network.connect: want TCP ports (1 to 65535), not a JSON number`},
		{`{"default": {"network": {"connect": [0]}}}`, `network.connect: port 0`},
		{`{"default": {"files": {"read": "/opt"}}}`, `default.files.read: want a list of paths, not a JSON string`},
		{`{"default": {"files": {"write": ["data"]}}}`, `files.write: "data" is not an absolute path`},
		{`{"default": {"landlock_abi": -1}}`, `landlock_abi: -1 is no ABI`},
		{`{"vms": []}`, `vms: want an object of policies by VM name`},
		{`{"vms": {"ts": 1}}`, `vms.ts: want an object with the keys`},
		{"{\n  \"default\": {,}\n}", "line 2, column 15"},
		{`[]`, `want an object`},
	} {
		_, err := sandbox.ParseFile([]byte(tc.file))
		if !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant ErrInvalidConfig saying %q", tc.file, err, tc.want)
		}
	}
}

// ReadFile names the file in its errors.
func TestReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.json")
	if err := os.WriteFile(path, []byte(`{"default": {"usr": "x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := sandbox.ReadFile(path)
	if want := fmt.Sprintf(`sandbox policy file %s: invalid config: default: unknown key "usr"`, path); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err %v, want %q", err, want)
	}
	if _, err := sandbox.ReadFile(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// A limit writes itself back as it reads.
func TestLimitJSON(t *testing.T) {
	for in, want := range map[string]string{
		`0`:                                   `0`,
		`"unlimited"`:                         `"unlimited"`,
		`"512MiB"`:                            `536870912`,
		`{"soft": 1024, "hard": "unlimited"}`: `{"soft":1024,"hard":"unlimited"}`,
		`{"soft": 7, "hard": 7}`:              `7`,
	} {
		var l sandbox.Limit
		if err := l.UnmarshalJSON([]byte(in)); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if out, _ := l.MarshalJSON(); string(out) != want {
			t.Errorf("%s: %s, want %s", in, out, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, l := range []sandbox.Level{sandbox.Off, sandbox.BestEffort, sandbox.Required} {
		got, err := sandbox.ParseLevel(l.String())
		if err != nil || got != l {
			t.Errorf("ParseLevel(%q): %v, %v", l, got, err)
		}
	}
	if _, err := sandbox.ParseLevel("strict"); !errors.Is(err, vmre.ErrInvalidConfig) || !strings.Contains(err.Error(), "off, best-effort or required") {
		t.Errorf("ParseLevel(strict): %v", err)
	}
}
