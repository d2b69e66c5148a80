//go:build unix

package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDoctor(t *testing.T) {
	t.Parallel()
	sleeper := writeScript(t, "sleeper", "exec sleep 30\n")
	crash := writeScript(t, "crash", "echo 'cannot open /etc/myvm.toml' >&2\nexit 3\n")
	nointerp := writeExecutable(t, "nointerp", "#!/nonexistent/vmre-test-sh\n")
	noenvinterp := writeExecutable(t, "noenvinterp", "#!/usr/bin/env no-such-vmre-interpreter\n")
	crlf := writeExecutable(t, "crlf", "#!/bin/sh\r\necho edited on Windows\r\n")
	envArgs := writeExecutable(t, "envargs", "#!/usr/bin/env sh -e\n")
	noshebang := writeExecutable(t, "noshebang", "echo a shell would run this; exec does not\n")
	notforhere := writeExecutable(t, "notforhere", "\x7fELF\x02\x01\x01\x00not a program for any machine")
	noexec := filepath.Join(t.TempDir(), "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		ok   []string // phases reported ok
		fail string   // the phase that fails
		want []string // in the report
	}{
		{"healthy", []string{exampleVM}, exitOK,
			[]string{"file", "exec", "dial-back", "version", "server", "health", "stop"}, "",
			[]string{"built with github.com/vmre/vmre", "grpc.health.v1 Check: serving", "stopped by SIGTERM", "verdict: healthy"}},
		{"wrong version", []string{exampleVM, "--protocol-version", "9"}, exitVersionMismatch,
			[]string{"file", "exec", "dial-back"}, "version",
			[]string{"protocol version mismatch vmre: 1 vm: 9", "fix:   the VM is newer than the host: upgrade the host",
				"verdict: protocol version mismatch (exit code 3)"}},
		{"not a VM", []string{"--handshake-timeout", "1s", sleeper}, exitHandshakeTimeout,
			[]string{"file", "exec"}, "dial-back",
			[]string{"a script (#!/bin/sh)", "did not call back within 1s", "does not read VMRE_RUNTIME_ENGINE_ADDR",
				"not a VM plugin at all", "client.Serve", "verdict: the VM never called back (exit code 4)"}},
		{"never calls back", []string{"--handshake-timeout", "1s", exampleVM, "--no-handshake"}, exitHandshakeTimeout,
			[]string{"file", "exec"}, "dial-back",
			[]string{"last output lines of the VM:", "not calling the host back"}},
		{"exits at once", []string{crash}, exitVMExited,
			[]string{"file", "exec"}, "dial-back",
			[]string{"exited before its handshake: exit code 3", "| stderr: cannot open /etc/myvm.toml", "vmre serve"}},
		{"missing file", []string{filepath.Join(t.TempDir(), "missing")}, exitFailure,
			nil, "file", []string{"no such file", "fix:   check the path", "verdict: the plugin file cannot run (exit code 1)"}},
		{"not executable", []string{noexec}, exitFailure,
			nil, "file", []string{"is not executable", "fix:   chmod +x " + noexec}},
		{"interpreter missing", []string{nointerp}, exitFailure,
			nil, "file", []string{"its #! line names /nonexistent/vmre-test-sh, which does not exist", "fix:   install the interpreter"}},
		{"interpreter not in PATH", []string{noenvinterp}, exitFailure,
			nil, "file", []string{"its #! line runs no-such-vmre-interpreter, which is not in PATH"}},
		{"#! line with a CR", []string{crlf}, exitFailure,
			nil, "file", []string{"its #! line ends in a carriage return", `fix:   convert the file to Unix line endings: sed -i 's/\r$//' `}},
		{"env with arguments", []string{envArgs}, exitFailure,
			nil, "file", []string{`its #! line asks env to run "sh -e", one name with its blanks`, "fix:   split the words with env -S: #!/usr/bin/env -S sh -e"}},
		{"script without #!", []string{noshebang}, exitFailure,
			[]string{"file"}, "exec", []string{"a script needs a #! line to run", "fix:   start the script with a #! line"}},
		{"ELF not for this machine", []string{notforhere}, exitFailure,
			[]string{"file"}, "exec", []string{"another OS or architecture", "fix:   build the plugin for this machine"}},
		{"not in PATH", []string{"no-such-vmre-plugin"}, exitFailure,
			nil, "file", []string{`"no-such-vmre-plugin" is not in PATH`, "./no-such-vmre-plugin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, 30*time.Second, append([]string{"doctor"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, name := range tc.ok {
				if !regexp.MustCompile(`(?m)^  ok +` + regexp.QuoteMeta(name) + ` `).MatchString(r.stdout) {
					t.Errorf("phase %s is not ok:\n%s", name, r.stdout)
				}
			}
			if tc.fail != "" && !regexp.MustCompile(`(?m)^  FAIL +`+regexp.QuoteMeta(tc.fail)+` `).MatchString(r.stdout) {
				t.Errorf("phase %s does not fail:\n%s", tc.fail, r.stdout)
			}
			if tc.fail != "" && !strings.Contains(r.stdout, "  skip  stop") && tc.fail != "stop" {
				t.Errorf("the phases after the failure are not skipped:\n%s", r.stdout)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("report lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func TestRunsHere(t *testing.T) {
	here := runtime.GOOS + "/" + runtime.GOARCH
	if !runsHere(here) {
		t.Errorf("runsHere(%q) = false for this machine's own platform", here)
	}
	for _, other := range []string{"plan9/" + runtime.GOARCH, runtime.GOOS + "/s390x", runtime.GOOS + "/wasm"} {
		if other == here {
			continue
		}
		if runsHere(other) {
			t.Errorf("runsHere(%q) = true on %s", other, here)
		}
		p := pluginInfo{path: "vm", platform: other}
		var problem *fileProblem
		if err := p.runnable(); !errors.As(err, &problem) || !strings.Contains(problem.fix, "GOARCH="+runtime.GOARCH) {
			t.Errorf("runnable() of a program built for %s = %v; want a problem whose fix names this machine's GOARCH", other, err)
		}
	}
}
