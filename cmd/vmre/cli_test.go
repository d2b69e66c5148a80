//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// longID is a VM ID as long as AvalancheGo's.
const longID = "srEXiWaHuhNyGwPUi444Tu47ZEDwxTWrbQiuD7FmgSAQ6X7Dy"

// TestClients drives a node of the test's process with every client
// command, in the test's process too: ps and its flags, stop and start of
// several VMs and --all, inspect, logs with -n, -f, --since and flags
// after NAME, and the follower's clean end when the node stops.
func TestClients(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dir, longID), 0o755)
	helperPlugin(t, dir, "talker", "talker", "20")
	aliases := filepath.Join(t.TempDir(), "aliases.json")
	if err := os.WriteFile(aliases, []byte(`{"alpha": ["a1"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The talker is the test binary, which the sandbox does not let a VM
	// execute.
	n := startInNode(t, vars, "--plugin-dir", dir, "--aliases", aliases, "--sandbox", "off")
	pids := map[string]int{}
	for _, vm := range []string{"alpha", longID, "talker"} {
		pids[vm] = int(n.waitState(t, vm, "running", nil)["pid"].(float64))
	}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return inProcess(t, vars, args...)
	}

	// ps: the alias names alpha, the long ID is cut, unless --no-trunc.
	code, out, errOut := cli("ps")
	if code != exitOK || !regexp.MustCompile(`(?m)^NAME +STATE +PID +UPTIME +RESTARTS +LAST EXIT +DIGEST$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^a1 +running +`+strconv.Itoa(pids["alpha"])+` `).MatchString(out) ||
		!strings.Contains(out, longID[:19]+"… ") || strings.Contains(out, longID) {
		t.Errorf("vmre ps: exit %d\n%s%s", code, out, errOut)
	}
	if _, out, _ := cli("ps", "--no-trunc"); !strings.Contains(out, longID+" ") {
		t.Errorf("vmre ps --no-trunc does not show the whole ID:\n%s", out)
	}
	if _, out, _ := cli("ps", "-q"); out != "a1\n"+longID+"\ntalker\n" {
		t.Errorf("vmre ps -q:\n%s", out)
	}
	if _, out, _ := cli("ps", "--format", "{{.Name}} {{.State}} {{.ID}}"); out != "a1 running alpha\n"+longID+" running "+longID+"\ntalker running talker\n" {
		t.Errorf("vmre ps --format:\n%s", out)
	}
	if code, _, errOut := cli("ps", "--format", "{{.Nope"); code != exitUsage || !strings.Contains(errOut, "--format") {
		t.Errorf("vmre ps with a bad template: exit %d\n%s", code, errOut)
	}

	// stop of two VMs by name and alias; ps hides them, ps -a shows them.
	code, out, errOut = cli("stop", "a1", longID)
	if code != exitOK || out != "stopped alpha\nstopped "+longID+"\n" {
		t.Errorf("vmre stop a1 %s: exit %d\n%s%s", longID, code, out, errOut)
	}
	if _, out, _ := cli("ps", "-q"); out != "talker\n" {
		t.Errorf("vmre ps after the stops:\n%s", out)
	}
	if _, out, _ := cli("ps", "-a", "--format", "{{.Name}} {{.State}}"); !strings.Contains(out, "a1 stopped\n") {
		t.Errorf("vmre ps -a after the stops:\n%s", out)
	}
	// start --all starts the stopped ones and says the running one runs.
	code, out, _ = cli("start", "--all")
	if code != exitOK || !strings.Contains(out, "started alpha: running, pid") || !strings.Contains(out, "talker is running already") {
		t.Errorf("vmre start --all: exit %d\n%s", code, out)
	}

	// restart --all: every VM runs again, with a new pid.
	code, out, errOut = cli("restart", "--all")
	if code != exitOK || strings.Count(out, ": running, pid ") != 3 {
		t.Errorf("vmre restart --all: exit %d\n%s%s", code, out, errOut)
	}
	for _, vm := range []string{"alpha", longID, "talker"} {
		pids[vm] = int(n.waitState(t, vm, "running", func(r record) bool { return int(r["pid"].(float64)) != pids[vm] })["pid"].(float64))
	}

	// An unknown name: exit 6, the names listed, no Connect code first.
	code, _, errOut = cli("inspect", "gamma")
	if code != exitNotFound || errOut != `vmre inspect: no VM named "gamma" (names: a1, `+longID+", talker)\n" {
		t.Errorf("vmre inspect gamma: exit %d\n%s", code, errOut)
	}
	code, out, _ = cli("inspect", "a1", "talker")
	var inspected []map[string]any
	if err := json.Unmarshal([]byte(out), &inspected); code != exitOK || err != nil || len(inspected) != 2 ||
		inspected[0]["name"] != "alpha" || inspected[1]["pid"] != float64(pids["talker"]) {
		t.Errorf("vmre inspect a1 talker: exit %d, %v\n%s", code, err, out)
	}
	code, out, _ = cli("ps", "--json", "--node", "http://127.0.0.1:1")
	if code != exitUnavailable || !strings.Contains(out, `"code":"unavailable"`) {
		t.Errorf("vmre ps --json of no node: exit %d\n%s", code, out)
	}

	// logs -n 5 -f after 20 lines, then 3 more: exactly 8 records, the
	// backlog's last 5 (the node's records about the run may be among
	// them: they race the VM's lines) and lines 21 to 23.
	n.events.waitFor(t, "talker ready", vmretest.WaitTimeout, isEvent("ready", func(r record) bool {
		return r["vm"] == "talker" && int(r["pid"].(float64)) == pids["talker"]
	}))
	first := startCLI(t, vars, "logs", "-f", "talker")
	first.out.waitFor(t, "line 20", vmretest.WaitTimeout, func(l string) bool { return strings.HasSuffix(l, " line 20") })
	first.cancel()
	first.wait(t)
	_, backlog, _ := cli("logs", "talker")
	last5 := records(backlog)[len(records(backlog))-5:]
	follow := startCLI(t, vars, "logs", "-n", "5", "-f", "talker")
	follow.out.waitFor(t, "the backlog's last record", vmretest.WaitTimeout, func(l string) bool { return l == last5[4] })
	before := time.Now()
	if err := syscall.Kill(pids["talker"], syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	follow.out.waitFor(t, "line 23", vmretest.WaitTimeout, func(l string) bool { return strings.HasSuffix(l, " line 23") })
	want := append(slices.Clone(last5), "INFO  stdout line 21", "INFO  stdout line 22", "INFO  stdout line 23")
	if recs := records(follow.out.String()); !slices.Equal(recs, want) {
		t.Errorf("logs -n 5 -f after 20 lines and 3 more: %d records; want the backlog's last 5 and lines 21 to 23\n%s", len(recs), follow.out)
	}
	if !strings.HasPrefix(follow.out.String(), fmt.Sprintf("-- run of pid %d --\n", pids["talker"])) {
		t.Errorf("logs does not begin with the run's line:\n%s", follow.out)
	}
	// --since a time: the three lines after it; flags after NAME.
	if code, out, errOut := cli("logs", "talker", "--since", before.Format(time.RFC3339Nano), "-t"); code != exitOK ||
		len(records(out)) != 3 || !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) INFO  stdout line 21$`).MatchString(out) {
		t.Errorf("logs talker --since %s -t: exit %d\n%s%s", before.Format(time.RFC3339Nano), code, out, errOut)
	}
	if code, out, _ := cli("logs", "talker", "--since", "1h"); code != exitOK || len(records(out)) < 23 {
		t.Errorf("logs --since 1h: exit %d, %d records\n%s", code, len(records(out)), out)
	}
	// The node's records about a VM are in its logs, marked.
	if _, out, _ := cli("logs", "a1"); !regexp.MustCompile(`(?m)^INFO  \[vmre\] stopped on request`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^-- run of pid \d+ --$`).MatchString(out) {
		t.Errorf("logs a1 lacks the node's records or the run lines:\n%s", out)
	}

	// The node's stop ends the follower at once, exit 0, "node stopped";
	// the stop does not wait for it (the HTTP server's shutdown would wait
	// up to server.ShutdownTimeout for an open stream).
	stopping := time.Now()
	if code := n.stop(t); code != exitOK {
		t.Fatalf("node: exit %d\n%s", code, n.stderr)
	}
	if took := n.ended.Sub(stopping); took >= server.ShutdownTimeout {
		t.Errorf("the node took %s to stop with a follower: it waited for it", took)
	}
	if code := follow.wait(t); code != exitOK || !strings.Contains(follow.stderr.String(), "vmre logs: node stopped") {
		t.Errorf("the follower: exit %d\n%s", code, follow.stderr)
	}
	if gap := follow.ended.Sub(n.ended); gap > 200*time.Millisecond {
		t.Errorf("the follower ended %s after the node", gap)
	}
}

// TestTwoNodes: with two nodes, a bare client lists them and exits 2;
// VMRE_NODE and --node choose one, by URL or name; --node by URL finds
// a tokened node's token file in its discovery file.
func TestTwoNodes(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dirA, "alpha"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dirB, "beta"), 0o755)
	a := startInNode(t, vars, "--plugin-dir", dirA, "--node-name", "east")
	b := startInNode(t, vars, "--plugin-dir", dirB, "--node-name", "west", "--admin-token-file", tokenFile(t))
	a.waitState(t, "alpha", "running", nil)
	b.waitState(t, "beta", "running", nil)
	urlA, urlB := "http://"+a.addr, "http://"+b.addr

	code, _, errOut := inProcess(t, vars, "ps")
	if code != exitUsage || !strings.Contains(errOut, "2 nodes run") || !strings.Contains(errOut, urlA) || !strings.Contains(errOut, urlB) ||
		!strings.Contains(errOut, "east") || !strings.Contains(errOut, "west") {
		t.Errorf("bare ps with two nodes: exit %d\n%s", code, errOut)
	}
	withNode := func(node string) map[string]string {
		m := map[string]string{}
		for k, v := range vars {
			m[k] = v
		}
		m[nodeEnv] = node
		return m
	}
	for _, c := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{withNode(urlA), []string{"ps", "-q"}, "alpha\n"},
		{withNode("west"), []string{"ps", "-q"}, "beta\n"},
		{vars, []string{"ps", "-q", "--node", "east"}, "alpha\n"},
		{vars, []string{"ps", "-q", "--node", urlB}, "beta\n"}, // the token from west's file
		{vars, []string{"ps", "-q", "--node", b.addr}, "beta\n"},
	} {
		code, out, errOut := inProcess(t, c.vars, c.args...)
		if code != exitOK || out != c.want {
			t.Errorf("%v (VMRE_NODE=%s): exit %d\n%s%s", c.args, c.vars[nodeEnv], code, out, errOut)
		}
	}
	if code, _, errOut := inProcess(t, withNode("north"), "ps"); code != exitUsage || !strings.Contains(errOut, `VMRE_NODE "north" names no running node`) {
		t.Errorf("VMRE_NODE=north: exit %d\n%s", code, errOut)
	}
}

// TestReload: vmre reload after adding a VM's file and a file that cannot
// run: the one added, the other refused with why, exit 1; --json lists
// every result, [] for none.
func TestReload(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	n := startInNode(t, vars, "--plugin-dir", dir)
	n.waitState(t, "alpha", "running", nil)
	if code, out, _ := inProcess(t, vars, "reload", "--json"); code != exitOK || !strings.Contains(out, `"added": []`) ||
		!strings.Contains(out, `"failed": []`) || !strings.Contains(out, `"unchanged": [`) {
		t.Errorf("reload of an unchanged directory: exit %d\n%s", code, out)
	}
	copyFile(t, exampleVM, filepath.Join(dir, "gamma"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("not a VM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := inProcess(t, vars, "reload")
	if code != exitFailure || !regexp.MustCompile(`(?m)^gamma +added +-$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^notes +refused +not executable \(mode -rw-r--r--\): `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^alpha +unchanged +-$`).MatchString(out) {
		t.Errorf("reload: exit %d\n%s%s", code, out, errOut)
	}
	n.waitState(t, "gamma", "running", nil)
	// A changed file (a new build renamed over the old) rolls out.
	next := filepath.Join(t.TempDir(), "gamma")
	copyFile(t, exampleVM, next, 0o755)
	f, err := os.OpenFile(next, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString("a new build\n")
		f.Close()
	}
	if err == nil {
		err = os.Rename(next, filepath.Join(dir, "gamma"))
	}
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := inProcess(t, vars, "reload"); code != exitFailure ||
		!regexp.MustCompile(`(?m)^gamma +changed +its new version rolls out \(vmre rollout gamma follows it, vmre ps shows it\)$`).MatchString(out) {
		t.Errorf("reload of a changed file: exit %d\n%s%s", code, out, errOut)
	}
}

// TestNodeStateMetrics: vmre_vm_state has exactly one 1 for each VM in
// every scrape while one VM crash-loops; the vm label is the alias;
// vmre_vm_info and vmre_build_info say what runs.
func TestNodeStateMetrics(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "crasher"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	aliases := filepath.Join(t.TempDir(), "aliases.json")
	if err := os.WriteFile(aliases, []byte(`{"alpha": ["a1", "a2"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startInNode(t, vars, "--plugin-dir", dir, "--aliases", aliases, "--restart", "always",
		"--backoff-initial", "10ms", "--backoff-max", "40ms", "--sandbox", "off") // the crash loop's pace, not the sandbox's
	n.waitState(t, "alpha", "running", nil)
	seen := map[string]bool{}
	for scrapes := 0; scrapes < 200 && !(seen["crashloop"] && seen["backoff"] && seen["starting"]); scrapes++ {
		body := getBody(t, "http://"+n.addr+"/metrics")
		ones := map[string]int{}
		for line := range strings.Lines(body) {
			if m := regexp.MustCompile(`^vmre_vm_state\{state="(\w+)",vm="(\w+)"\} 1$`).FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				ones[m[2]]++
				if m[2] == "crasher" {
					seen[m[1]] = true
				}
			}
		}
		if ones["a1"] != 1 || ones["crasher"] != 1 || len(ones) != 2 {
			t.Fatalf("scrape %d: vmre_vm_state has %v ones; want one for a1 and one for crasher\n%s", scrapes, ones, body)
		}
		if scrapes == 0 {
			// An unpinned VM's digest is taken once it runs: it may come
			// after the first scrape.
			info := regexp.MustCompile(`(?m)^vmre_vm_info\{aliases="a1,a2",digest="(|` + sha256File(t, exampleVM) + `)",id="alpha",pinned="false",vm="a1"\} 1$`)
			if !info.MatchString(body) || !strings.Contains(body, `vmre_build_info{goversion="go`) ||
				!strings.Contains(body, `vmre_launches_total{result="ready",vm="a1"} 1`) {
				t.Errorf("the scrape lacks alpha's info, the build's or alpha's launch labelled a1:\n%s", body)
			}
		}
	}
	if !seen["crashloop"] {
		t.Errorf("crasher never seen in crashloop: %v", seen)
	}
}

// TestExecFailuresForPeople: a pinned plugin built for another
// architecture fails naming its file, not its sealed copy, and what it was
// built for; a VM that gives its reason on stdout and exits is heard; an
// rpcchainvm plugin run without --legacy is told to use it.
func TestExecFailuresForPeople(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	header, arch := vmretest.ForeignELF()
	armvm := filepath.Join(dir, "armvm")
	if err := os.WriteFile(armvm, header, 0o755); err != nil {
		t.Fatal(err)
	}
	quitter := filepath.Join(dir, "quitter")
	if err := os.WriteFile(quitter, []byte("#!/bin/sh\necho 'failed to set fd limit: operation not permitted'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pins := filepath.Join(t.TempDir(), "pins")
	if err := os.WriteFile(pins, []byte(sha256File(t, armvm)+"  armvm\n"+sha256File(t, quitter)+"  quitter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the sandbox the launcher's exec fails; with it, the sandbox's
	// init step's: both name the file and what it was built for.
	for _, sb := range []string{"off", "best-effort"} {
		vars := clientEnv(t)
		n := startInNode(t, vars, "--plugin-dir", dir, "--pins", pins, "--sandbox", sb)
		n.waitState(t, "armvm", "failed", nil)
		n.waitState(t, "quitter", "failed", nil)
		_, out, errOut := inProcess(t, vars, "inspect", "armvm", "quitter")
		var vms []struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &vms); err != nil || len(vms) != 2 {
			t.Fatalf("--sandbox %s: inspect: %v\n%s%s", sb, err, out, errOut)
		}
		if want := "exec " + armvm + ": exec format error: it is an ELF program built for " + arch; !strings.Contains(vms[0].Error, want) ||
			strings.Contains(vms[0].Error, "/proc/self/fd") {
			t.Errorf("--sandbox %s: armvm's error %q; want %q", sb, vms[0].Error, want)
		}
		if !strings.Contains(vms[1].Error, "stdout: failed to set fd limit: operation not permitted") {
			t.Errorf("--sandbox %s: quitter's error %q; want its stdout line", sb, vms[1].Error)
		}
		hint := parseRecord(n.events.waitFor(t, "armvm's hint", vmretest.WaitTimeout, isEvent("hint", func(r record) bool { return r["vm"] == "armvm" })))
		if sb == "off" && !strings.Contains(hint["reason"].(string), "build it for this machine") {
			t.Errorf("armvm's hint: %v", hint)
		}
		if !strings.Contains(n.stderr.String(), `"hint":"`) {
			t.Errorf("--sandbox %s: the node logged no hint for its failed VMs:\n%s", sb, n.stderr)
		}
		if sb == "off" && (!regexp.MustCompile(`"msg":"plugin directory loaded".*"changed":\[\]`).MatchString(n.stderr.String()) ||
			strings.Contains(n.stderr.String(), ":null")) {
			t.Errorf("the node's JSON log has null lists:\n%s", n.stderr)
		}
	}

	// vmre run of a plugin that reads an rpcchainvm engine key.
	legacy := filepath.Join(t.TempDir(), "subnetevm")
	body := "#!/bin/sh\n# serves vm.runtime.Runtime; reads ODYSSEY_VM_RUNTIME_ENGINE_ADDR\nexit 0\n"
	if err := os.WriteFile(legacy, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	vars := clientEnv(t)
	code, _, errOut := inProcess(t, vars, "run", "--log-format", "json", legacy)
	if code != exitVMExited || !strings.Contains(errOut, "run it with --legacy --engine-key ODYSSEY_VM_RUNTIME_ENGINE_ADDR") {
		t.Errorf("run of an rpcchainvm plugin: exit %d\n%s", code, errOut)
	}
	// And a real one: AvalancheGo's xsvm, which make examples builds.
	xsvm, err := filepath.Abs(filepath.Join("..", "..", "sandbox", "testdata", "xsvm", "xsvm"))
	if err != nil {
		t.Fatal(err)
	}
	switch _, err := os.Stat(xsvm); {
	case err == nil:
		code, _, errOut := inProcess(t, vars, "run", "--log-format", "json", xsvm)
		if code != exitVMExited || !strings.Contains(errOut, "it looks like an rpcchainvm plugin (it reads AVALANCHE_VM_RUNTIME_ENGINE_ADDR)") ||
			!strings.Contains(errOut, "run it with --legacy --engine-key AVALANCHE_VM_RUNTIME_ENGINE_ADDR") {
			t.Errorf("run of xsvm without --legacy: exit %d\n%s", code, errOut)
		}
	case os.Getenv("CI") != "":
		t.Errorf("xsvm is not built (%v): make test builds it (make examples)", err)
	default:
		t.Logf("xsvm is not built (%v): make examples builds it; its hint is not checked", err)
	}
	// JSON logs: durations in milliseconds, empty lists [].
	code, _, errOut = inProcess(t, vars, "run", "--log-format", "json", "--log-level", "debug", "--check", exampleVM)
	if code != exitOK || !strings.Contains(errOut, `"graceful_timeout":5000`) || strings.Contains(errOut, "5000000000") {
		t.Errorf("run --check's JSON log: exit %d; want graceful_timeout in milliseconds\n%s", code, errOut)
	}
}

// TestEvents: vmre events prints each VM's state, then its changes, and
// ends with "node stopped" when the node stops.
func TestEvents(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	n := startInNode(t, vars, "--plugin-dir", dir)
	pid := int(n.waitState(t, "alpha", "running", nil)["pid"].(float64))
	ev := startCLI(t, vars, "events")
	ev.out.waitFor(t, "alpha running", vmretest.WaitTimeout, func(l string) bool {
		return strings.Contains(l, "  alpha  running  pid "+strconv.Itoa(pid))
	})
	// --json: one message a line, in the schema of ps --json (every
	// field, restarts 0 included).
	evJSON := startCLI(t, vars, "events", "--json")
	evJSON.out.waitFor(t, "alpha running as JSON", vmretest.WaitTimeout, func(l string) bool {
		return strings.Contains(l, `"state":"VM_STATE_RUNNING"`)
	})
	if code, _, errOut := inProcess(t, vars, "stop", "--timeout", "0", "alpha"); code != exitOK {
		t.Fatalf("stop: %d\n%s", code, errOut)
	}
	ev.out.waitFor(t, "alpha stopped", vmretest.WaitTimeout, func(l string) bool {
		return strings.Contains(l, "  alpha  stopped  ")
	})
	evJSON.out.waitFor(t, "alpha stopped as JSON", vmretest.WaitTimeout, func(l string) bool {
		return strings.Contains(l, `"state":"VM_STATE_STOPPED"`)
	})
	n.stop(t)
	if code := ev.wait(t); code != exitOK || !strings.Contains(ev.stderr.String(), "vmre events: node stopped") {
		t.Errorf("events: exit %d\n%s", code, ev.stderr)
	}
	evJSON.wait(t)
	for _, l := range evJSON.out.lines() {
		var m struct {
			VM map[string]any `json:"vm"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.VM["name"] != "alpha" || m.VM["restarts"] != float64(0) {
			t.Errorf("events --json line %q: %v; want a VM named alpha with restarts 0", l, err)
		}
	}
	if slices.ContainsFunc(ev.out.lines(), func(l string) bool { return !regexp.MustCompile(`^\d{4}-`).MatchString(l) }) {
		t.Errorf("events printed lines that are not events:\n%s", ev.out)
	}
}

// TestColorOnATerminal: ps colours STATE on a terminal (the env's
// injected one), and not with NO_COLOR, nor through a pipe.
func TestColorOnATerminal(t *testing.T) {
	t.Parallel()
	vars := clientEnv(t)
	delete(vars, "NO_COLOR")
	dir := t.TempDir()
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	n := startInNode(t, vars, "--plugin-dir", dir)
	n.waitState(t, "alpha", "running", nil)
	ps := func(tty bool, vars map[string]string) string {
		var out, errOut vmretest.SyncBuffer
		e := env2(&out, &errOut, vars)
		e.terminal = func(io.Writer) bool { return tty }
		if code := vmreMain(t.Context(), []string{"ps"}, e); code != exitOK {
			t.Fatalf("ps: exit %d\n%s", code, errOut.String())
		}
		return out.String()
	}
	if out := ps(true, vars); !regexp.MustCompile(`(?m)^alpha  \x1b\[32mrunning\x1b\[0m  \d+ `).MatchString(out) {
		t.Errorf("ps on a terminal: %q; want running in green, the columns in line", out)
	}
	noColor := map[string]string{"NO_COLOR": "1"}
	for k, v := range vars {
		noColor[k] = v
	}
	for _, out := range []string{ps(false, vars), ps(true, noColor)} {
		if strings.Contains(out, "\x1b") {
			t.Errorf("ps through a pipe or with NO_COLOR: %q; want no escape sequence", out)
		}
	}
}
