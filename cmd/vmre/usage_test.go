//go:build unix

package main

import (
	"strings"
	"testing"
	"time"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"vmre run", "vmre serve", "vmre doctor", "vmre version", "Exit codes:", "5  the VM exited"}},
		{[]string{"help"}, []string{"Commands:"}},
		{[]string{"run", "--help"}, []string{"Usage: vmre run [flags] PLUGIN [ARGS...]", "--protocol-version version",
			"--host-name name", "--engine-key variable", "--legacy", "--handshake-timeout duration", "--graceful-timeout duration",
			"--listen address", "--check", "--log-format format", "--log-level level", "AVALANCHE_VM_RUNTIME_ENGINE_ADDR",
			"Examples:", "GET /v1/vms", "3  protocol version mismatch"}},
		{[]string{"help", "run"}, []string{"Usage: vmre run"}},
		{[]string{"serve", "-h"}, []string{"Usage: vmre serve", "VMRE_RUNTIME_ENGINE_TOKEN=TOKEN", "--listen address", "--legacy", "curl"}},
		{[]string{"doctor", "--help"}, []string{"Usage: vmre doctor", "dial-back", "health", "--handshake-timeout", "Examples:"}},
		{[]string{"version", "--help"}, []string{"Usage: vmre version"}},
		{[]string{"logs", "--help"}, []string{"\n  -f\n", "--since"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, 10*time.Second, tc.args...)
			if r.code != exitOK || r.stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runInProcess(t, 10*time.Second, "version")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"vmre ", "protocol version: 1\n", "go: go1."} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("version lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "Commands:"},
		{[]string{"bogus"}, "bogus"},
		{[]string{"version", "extra"}, "extra"},
		{[]string{"doctor"}, "PLUGIN"},
		{[]string{"doctor", "--nope", exampleVM}, "vmre doctor: flag provided but not defined: -nope\nRun 'vmre doctor --help' for usage."},
		{[]string{"ps", "--bogus"}, "vmre ps: flag provided but not defined: -bogus\nRun 'vmre ps --help' for usage."},
		{[]string{"remote", "bogus"}, "Run 'vmre remote --help' for usage."},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, 10*time.Second, tc.args...)
			if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, a message with %q", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
}
