//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/internal/vmretest"
)

func init() {
	// crash-once MARKER: a VM that serves, and exits 3 once it is ready
	// unless MARKER exists, which it makes first: it crashes once, and
	// runs on when launched again.
	helpers["crash-once"] = func(args []string) int {
		_, err := os.Stat(args[0])
		crash := errors.Is(err, os.ErrNotExist)
		if crash {
			if err := os.WriteFile(args[0], nil, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		ready := func(client.Ready) {
			if crash {
				fmt.Fprintln(os.Stderr, "crashing on purpose")
				os.Exit(3)
			}
		}
		if err := client.Serve(context.Background(), http.NewServeMux(), client.WithOnReady(ready)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
}

// psJSON is ps --json's answer, the VMs by name.
func psJSON(t *testing.T, vars map[string]string, url string) map[string]map[string]any {
	t.Helper()
	code, out, errOut := inProcess(t, vars, "ps", "--json", "--node", url)
	var list struct {
		VMs []map[string]any `json:"vms"`
	}
	if err := json.Unmarshal([]byte(out), &list); code != exitOK || err != nil {
		t.Fatalf("vmre ps --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	byName := map[string]map[string]any{}
	for _, vm := range list.VMs {
		byName[vm["name"].(string)] = vm
	}
	return byName
}

// TestKeepRemoved: with --keep-removed, a running VM whose file left the
// plugin directory runs on after the reload, shown removed by the admin
// API and by vmre ps; once stopped, ps hides it and ps -a lists it.
// Without it, the reload stops the VM and forgets it.
func TestKeepRemoved(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{true, false} {
		t.Run("keep="+strconv.FormatBool(keep), func(t *testing.T) {
			t.Parallel()
			vars := clientEnv(t)
			dir := t.TempDir()
			copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
			copyFile(t, exampleVM, filepath.Join(dir, "beta"), 0o755)
			args := []string{"--plugin-dir", dir}
			if keep {
				args = append(args, "--keep-removed")
			}
			n := startInNode(t, vars, args...)
			url := "http://" + n.addr
			pid := int(n.waitState(t, "alpha", "running", nil)["pid"].(float64))
			n.waitState(t, "beta", "running", nil)

			if err := os.Remove(filepath.Join(dir, "alpha")); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := inProcess(t, vars, "reload", "--json", "--node", url)
			if code != exitOK || !strings.Contains(out, `"removed": [`) || !strings.Contains(out, `"alpha"`) {
				t.Fatalf("vmre reload after alpha's file left: exit %d\n%s%s", code, out, errOut)
			}
			if !keep {
				if !vmretest.ProcessGone(pid) {
					t.Errorf("alpha (pid %d) runs after its file left, without --keep-removed", pid)
				}
				if vm, listed := psJSON(t, vars, url)["alpha"]; listed {
					t.Errorf("ps --json lists alpha after its file left: %v", vm)
				}
				if _, out, _ := inProcess(t, vars, "ps", "-a", "-q", "--node", url); out != "beta\n" {
					t.Errorf("vmre ps -a -q after alpha's file left:\n%s", out)
				}
				return
			}

			// Kept: the same process runs, shown removed.
			if err := syscall.Kill(pid, 0); err != nil {
				t.Fatalf("alpha (pid %d) is gone after the reload with --keep-removed: %v", pid, err)
			}
			vm := psJSON(t, vars, url)["alpha"]
			if vm["removed"] != true || vm["state"] != "VM_STATE_RUNNING" || vm["pid"] != float64(pid) {
				t.Errorf("ps --json of the kept VM: %v; want removed, running, pid %d", vm, pid)
			}
			_, out, _ = inProcess(t, vars, "ps", "--node", url)
			if !regexp.MustCompile(`(?m)^alpha +removed \(running\) +` + strconv.Itoa(pid) + ` `).MatchString(out) {
				t.Errorf("vmre ps does not show alpha removed (running), pid %d:\n%s", pid, out)
			}

			// Stopped: gone from ps, listed by ps -a.
			if code, out, errOut := inProcess(t, vars, "stop", "--node", url, "alpha"); code != exitOK {
				t.Fatalf("vmre stop alpha: exit %d\n%s%s", code, out, errOut)
			}
			if !vmretest.ProcessGone(pid) {
				t.Errorf("alpha (pid %d) runs after its stop", pid)
			}
			if _, out, _ := inProcess(t, vars, "ps", "-q", "--node", url); out != "beta\n" {
				t.Errorf("vmre ps -q after the removed VM's stop:\n%s", out)
			}
			_, out, _ = inProcess(t, vars, "ps", "-a", "--node", url)
			if !regexp.MustCompile(`(?m)^alpha +removed \(stopped\) +- `).MatchString(out) {
				t.Errorf("vmre ps -a does not list alpha removed (stopped):\n%s", out)
			}
		})
	}
}

// TestLogsOfACrash: vmre logs of a VM that crashed once under
// --restart on-failure holds the node's own records of it, marked
// [vmre]: its exit and the backoff, the restart, and the new run.
func TestLogsOfACrash(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	helperPlugin(t, dir, "crasher", "crash-once", filepath.Join(t.TempDir(), "crashed"))
	// The plugin is the test binary, which the sandbox does not let a VM
	// execute.
	n := startInNode(t, vars, "--plugin-dir", dir, "--sandbox", "off", "--restart", "on-failure",
		"--backoff-initial", "50ms", "--backoff-max", "200ms")
	first := int(n.waitState(t, "crasher", "running", nil)["pid"].(float64))
	second := int(n.waitState(t, "crasher", "running", func(r record) bool { return int(r["pid"].(float64)) != first })["pid"].(float64))

	code, out, errOut := inProcess(t, vars, "logs", "--node", "http://"+n.addr, "crasher")
	if code != exitOK {
		t.Fatalf("vmre logs crasher: exit %d\n%s%s", code, out, errOut)
	}
	// In order: the first run, its exit, the backoff with the exit, the
	// restart, the second run. (The VM's own lines race the node's records
	// of the same moment: they are not in the order.)
	if !strings.Contains(out, "\nINFO  stderr crashing on purpose\n") {
		t.Errorf("vmre logs crasher lacks the VM's last line:\n%s", out)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^INFO  \[vmre\] launching state=starting$`),
		regexp.MustCompile(`^-- run of pid ` + strconv.Itoa(first) + ` --$`),
		regexp.MustCompile(`^INFO  \[vmre\] running state=running addr=`),
		regexp.MustCompile(`^WARN  \[vmre\] vm exited exit="exit code 3 after \S+"$`),
		regexp.MustCompile(`^WARN  \[vmre\] waiting to restart state=backoff attempt=1 delay=\S+ exit="exit code 3 after \S+"$`),
		regexp.MustCompile(`^INFO  \[vmre\] restarting state=starting$`),
		regexp.MustCompile(`^-- run of pid ` + strconv.Itoa(second) + ` --$`),
		regexp.MustCompile(`^INFO  \[vmre\] running state=running addr=`),
	}
	next := 0
	for line := range strings.Lines(out) {
		if next < len(want) && want[next].MatchString(strings.TrimSuffix(line, "\n")) {
			next++
		}
	}
	if next < len(want) {
		t.Errorf("vmre logs crasher lacks, after what it matched, a line matching %s:\n%s", want[next], out)
	}
}

// TestRestartTimeout: vmre restart --timeout D of a VM that ignores
// SIGTERM kills it after D, far below the node's graceful timeout: its
// last exit is by SIGKILL, in the kill stage.
func TestRestartTimeout(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// unwell ignores SIGTERM; with no liveness probes, it runs until
	// killed.
	script := "#!/bin/sh\n" + vmretest.ModeKey + "=unwell exec " + self + "\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "stubborn"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// A graceful timeout longer than the client's own bound
	// (runInProcess's 60 s): a restart that waited for it would fail the
	// test.
	n := startInNode(t, vars, "--plugin-dir", dir, "--sandbox", "off", "--restart", "never", "--liveness-interval", "0", "--graceful-timeout", "10m")
	url := "http://" + n.addr
	pid := int(n.waitState(t, "stubborn", "running", nil)["pid"].(float64))
	// The next run too ignores SIGTERM: killed before the node's stop,
	// which would wait for it for the graceful timeout.
	t.Cleanup(func() {
		r := n.events.waitFor(t, "stubborn's next run", vmretest.WaitTimeout, isState("stubborn", "running", func(r record) bool {
			return int(r["pid"].(float64)) != pid
		}))
		syscall.Kill(int(parseRecord(r)["pid"].(float64)), syscall.SIGKILL)
	})

	r := runInProcessEnv(t, vars, vmretest.WaitTimeout, "restart", "--timeout", "300ms", "--node", url, "stubborn")
	if r.code != exitOK || !strings.Contains(r.stdout, "restarted stubborn: running, pid ") {
		t.Fatalf("vmre restart --timeout 300ms stubborn: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !vmretest.ProcessGone(pid) {
		t.Fatalf("the first run (pid %d) runs after the restart", pid)
	}
	last, _ := psJSON(t, vars, url)["stubborn"]["last_exit"].(map[string]any)
	if last["signal"] != "killed" || !strings.HasSuffix(fmt.Sprint(last["summary"]), "(stopped by SIGKILL)") {
		t.Errorf("stubborn's last exit after restart --timeout: %v; want killed, stopped by SIGKILL", last)
	}
}

// TestNodeNameNotUTF8: a plugin file whose name is not valid UTF-8,
// beside a good VM, is refused with its name escaped; the good VM runs,
// and ps, ps --json, GET /v1/vms, vmre reload and GET /metrics answer
// valid UTF-8 (the metrics as promtool reads them) after its handshake.
func TestNodeNameNotUTF8(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; the README asks for Debian's prometheus package: apt-get install -y prometheus")
	}
	const bad = "bad\xffname"
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "good"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dir, bad), 0o755)
	n := startInNode(t, vars, "--plugin-dir", dir)
	url := "http://" + n.addr
	pid := int(n.waitState(t, "good", "running", nil)["pid"].(float64))
	escaped := safetext.Terminal(bad)
	if escaped != `bad\xffname` {
		t.Fatalf("the name escapes as %q", escaped)
	}

	code, out, errOut := inProcess(t, vars, "ps", "--node", url)
	if code != exitOK || !utf8.ValidString(out) || !regexp.MustCompile(`(?m)^good +running +`+strconv.Itoa(pid)+` `).MatchString(out) {
		t.Errorf("vmre ps: exit %d, valid UTF-8 %v\n%s%s", code, utf8.ValidString(out), out, errOut)
	}
	if vms := psJSON(t, vars, url); len(vms) != 1 || vms["good"] == nil {
		t.Errorf("ps --json: %v; want good alone", vms)
	}
	for _, path := range []string{"/v1/vms", "/metrics"} {
		body := getBody(t, url+path)
		if !utf8.ValidString(body) || strings.Contains(body, bad) {
			t.Errorf("GET %s: not valid UTF-8, or the raw name:\n%q", path, body)
		}
		if path == "/v1/vms" && (!json.Valid([]byte(body)) || !strings.Contains(body, `"name": "good"`)) {
			t.Errorf("GET /v1/vms: not JSON, or without good:\n%s", body)
		}
		if path != "/metrics" {
			continue
		}
		if !strings.Contains(body, `vmre_vm_restarts_total{vm="good"} 0`) {
			t.Errorf("GET /metrics lacks good's series:\n%s", body)
		}
		lint := exec.CommandContext(t.Context(), promtool, "check", "metrics")
		lint.Stdin = strings.NewReader(body)
		if out, err := lint.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	// The refusal, as the registry reports it: the entry escaped.
	code, out, errOut = inProcess(t, vars, "reload", "--json", "--node", url)
	var report struct {
		Unchanged []string `json:"unchanged"`
		Failed    []struct {
			Entry, Kind, Error string
		} `json:"failed"`
	}
	if err := json.Unmarshal([]byte(out), &report); code != exitFailure || err != nil || !utf8.ValidString(out) ||
		len(report.Failed) != 1 || report.Failed[0].Entry != escaped || report.Failed[0].Kind != "bad name" ||
		len(report.Unchanged) != 1 || report.Unchanged[0] != "good" {
		t.Errorf("vmre reload --json: exit %d, %v; want exit 1, good unchanged, %s refused as a bad name\n%s%s", code, err, escaped, out, errOut)
	}
	code, out, _ = inProcess(t, vars, "reload", "--node", url)
	if code != exitFailure || !utf8.ValidString(out) || !strings.Contains(out, escaped) {
		t.Errorf("vmre reload: exit %d; want 1 and the entry %s\n%s", code, escaped, out)
	}
	// The node's own log names the refused entry escaped, in valid UTF-8.
	if log := n.stderr.String(); !utf8.ValidString(log) || !strings.Contains(log, `"entry":"bad\\xffname","kind":"bad name"`) {
		t.Errorf("the node's log does not name the refused entry escaped, or is not UTF-8:\n%q", log)
	}
	// The good VM ran through all this.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("good (pid %d): %v", pid, err)
	}
}
