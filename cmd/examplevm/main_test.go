package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// TestMain runs the test binary as examplevm when startPlugin started it
// (vmretest.Command), and the tests otherwise, failing the package when one
// leaves a goroutine behind.
func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{
		"examplevm": func(args []string) int { return run(context.Background(), args, os.Stderr) },
	})
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		var out bytes.Buffer
		if code := run(t.Context(), []string{arg}, &out); code != 0 {
			t.Errorf("%s: exit %d, want 0", arg, code)
		}
		for _, want := range []string{"vmre run", "--protocol-version version", "--log-level level",
			"--no-handshake", "never call the host back", "--unhealthy", "--exit-after", vmre.EngineAddressKey, "-h, --help"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s: help lacks %q:\n%s", arg, want, out.String())
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud"}, `invalid value "loud" for flag -log-level`},
		{[]string{"--protocol-version", "-1"}, "invalid value"},
		{[]string{"--protocol-version", "4294967296"}, "out of range"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--exit-after", "-1s"}, "give a positive duration"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if code := run(t.Context(), tt.args, &out); code != 2 {
			t.Errorf("%q: exit %d, want 2", tt.args, code)
		}
		if s := out.String(); !strings.Contains(s, tt.want) || !strings.Contains(s, usageHint) {
			t.Errorf("%q: output %q lacks %q and the hint", tt.args, s, tt.want)
		}
	}
}

// TestNotPlugin runs examplevm by hand, without the host's variables.
func TestNotPlugin(t *testing.T) {
	tests := []struct {
		name, addr, token, want string
	}{
		{"neither", "", "", client.ErrNotPlugin.Error() + "\n"},
		{"no token", "127.0.0.1:1", "", client.ErrNotPlugin.Error() + " (" + vmre.EngineTokenKey + " is not set)\n"},
		{"no address", "", "t", client.ErrNotPlugin.Error() + " (" + vmre.EngineAddressKey + " is not set)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(vmre.EngineAddressKey, tt.addr)
			t.Setenv(vmre.EngineTokenKey, tt.token)
			for _, args := range [][]string{nil, {"--no-handshake"}} {
				var out bytes.Buffer
				if code := run(t.Context(), args, &out); code != 2 {
					t.Errorf("%q: exit %d, want 2", args, code)
				}
				if out.String() != tt.want {
					t.Errorf("%q: stderr = %q, want %q", args, out.String(), tt.want)
				}
			}
		})
	}
}

// parseRecords parses JSON log lines.
func parseRecords(t *testing.T, s string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(s) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}
