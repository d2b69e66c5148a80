//go:build linux

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestAlertRules: the shipped alerting rules pass promtool's check, and
// its unit tests feed them series that fire and series that must not.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; the README asks for Debian's prometheus package: apt-get install -y prometheus")
	}
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "vmre.rules.yml"}, {"test", "rules", "vmre.rules.test.yml"}} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The rules in docs/OPERATIONS.md are the file's.
	rules, err := os.ReadFile(filepath.Join(dir, "vmre.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(rules)) {
		t.Error("docs/OPERATIONS.md does not show deploy/prometheus/vmre.rules.yml as it is")
	}
}

// TestSystemdUnit: the shipped unit passes systemd-analyze verify (with
// its ExecStart pointed at the vmre under test, which verify requires to
// exist).
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed; the README asks for it: apt-get install -y systemd")
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "vmre.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/vmre", vmreBin)
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed", "StateDirectory=vmre"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
	path := filepath.Join(t.TempDir(), "vmre.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdNotify: vmre node under a service manager (NOTIFY_SOCKET, a
// unixgram socket of the test's) tells READY=1 with its VMs' counts once
// they run, WATCHDOG=1 within WATCHDOG_USEC, RELOADING=1 with
// MONOTONIC_USEC then READY=1 around a SIGHUP's reload, and STOPPING=1 at
// SIGTERM. A built vmre: the signals are the point.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(what string, match func(string) bool) string {
		t.Helper()
		deadline := time.After(vmretest.WaitTimeout)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("the socket closed before %s", what)
				}
				if match(m) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s within %s", what, vmretest.WaitTimeout)
			}
		}
	}
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dir, "beta"), 0o755)
	env := append(ownRunDir(t), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	p := startProc(t, env, vmreBin, "node", "--plugin-dir", dir, "--data-dir", t.TempDir())

	ready := next("READY=1", func(m string) bool { return strings.Contains(m, "READY=1") })
	if !strings.Contains(ready, "STATUS=2 VMs: 2 running") {
		t.Errorf("READY=1 came with %q; want both VMs running", ready)
	}
	next("WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading := next("RELOADING=1", func(m string) bool { return strings.HasPrefix(m, "RELOADING=1\n") })
	usec, err := strconv.ParseInt(strings.TrimPrefix(strings.Split(reloading, "\n")[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec <= 0 {
		t.Errorf("RELOADING=1 came with %q; want MONOTONIC_USEC", reloading)
	}
	next("READY=1 after the reload", func(m string) bool { return strings.Contains(m, "READY=1") })
	if code := p.signal(t, syscall.SIGTERM, cleanupGrace); code != exitOK {
		t.Errorf("node: exit %d\n%s", code, p.stderr)
	}
	next("STOPPING=1", func(m string) bool { return strings.HasPrefix(m, "STOPPING=1\n") })
}
