//go:build unix

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const testToken = "an-admin-token-of-the-cli-tests"

// startNode runs `vmre node` on a fresh directory holding the example VM
// under each of names, and waits until they all run. It returns the node,
// its mux address and the pids of the VMs by name.
func startNodeOf(t *testing.T, env []string, names []string, args ...string) (*proc, string, map[string]int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		copyFile(t, exampleVM, filepath.Join(dir, name), 0o755)
	}
	p := startProc(t, env, vmreBin, append([]string{"node", "--plugin-dir", dir, "--data-dir", t.TempDir(), "--log-format", "json", "--events", "-"}, args...)...)
	mux := parseRecord(p.stdout.waitFor(t, "listening", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	pids := map[string]int{}
	for _, name := range names {
		r := parseRecord(p.stdout.waitFor(t, name+" running", 20*time.Second, isState(name, "running", nil)))
		pids[name] = int(r["pid"].(float64))
	}
	return p, mux, pids
}

func tokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ownRunDir is the environment of a test whose clients must find its node
// and no other: an XDG_RUNTIME_DIR of its own.
func ownRunDir(t *testing.T) []string {
	return append(testEnv(), "XDG_RUNTIME_DIR="+t.TempDir())
}

// cli runs a vmre client command to its end.
func cli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runVMREEnv(t, env, 60*time.Second, args...)
}

// TestNodeAdmin drives a running node with the CLI's clients, curl and
// grpcurl: ps, logs, logs -f across a restart, stop, start, the token.
func TestNodeAdmin(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	token := tokenFile(t)
	env := ownRunDir(t)
	p, mux, pids := startNodeOf(t, env, []string{"alpha", "beta"}, "--admin-token-file", token)
	url := "http://" + mux

	// ps finds the node by itself, with the token file the node named.
	ps := cli(t, env, "ps")
	if ps.code != exitOK || !strings.Contains(ps.stdout, "NAME") || !strings.Contains(ps.stdout, "alpha") {
		t.Fatalf("vmre ps: exit %d\n%s%s", ps.code, ps.stdout, ps.stderr)
	}
	var listed struct {
		Vms []struct {
			Name  string `json:"name"`
			State string `json:"state"`
			Pid   int    `json:"pid"`
		} `json:"vms"`
	}
	psJSON := cli(t, env, "ps", "--json", "--node", url, "--admin-token-file", token)
	if err := json.Unmarshal([]byte(psJSON.stdout), &listed); err != nil || len(listed.Vms) != 2 ||
		listed.Vms[0].State != "VM_STATE_RUNNING" || listed.Vms[0].Pid != pids[listed.Vms[0].Name] {
		t.Fatalf("vmre ps --json: %v\n%s", err, psJSON.stdout)
	}
	// With the node's URL, the token file comes from the node's own file;
	// where that is not found, the client is refused, and told why.
	if r := cli(t, env, "ps", "--node", url); r.code != exitOK {
		t.Errorf("vmre ps --node URL of a tokened node: exit %d\n%s", r.code, r.stderr)
	}
	if r := cli(t, ownRunDir(t), "ps", "--node", url); r.code != exitUnauthenticated || !strings.Contains(r.stderr, "--admin-token-file") ||
		strings.HasPrefix(r.stderr, "vmre ps: unauthenticated") {
		t.Errorf("vmre ps without the token: exit %d\n%s", r.code, r.stderr)
	}
	// An empty token file is named as such, not taken for no token.
	empty := writeExecutable(t, "empty-token", "")
	if r := cli(t, env, "ps", "--node", url, "--admin-token-file", empty); r.code != exitUsage ||
		!strings.Contains(r.stderr, "--admin-token-file "+empty+" is empty") {
		t.Errorf("vmre ps with an empty token file: exit %d\n%s", r.code, r.stderr)
	}

	// curl: a unary call with Connect JSON; without the token, 401.
	out, err := exec.CommandContext(t.Context(), curl, "-sS", "-X", "POST", "-H", "Content-Type: application/json",
		"-H", "Authorization: Bearer "+testToken, "-d", `{"name":"beta"}`, url+"/vmre.admin.v1.AdminService/GetVM").Output()
	if err != nil || !strings.Contains(string(out), `"name":"beta"`) || !strings.Contains(string(out), "VM_STATE_RUNNING") {
		t.Errorf("curl GetVM: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(t.Context(), curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
		"-H", "Content-Type: application/json", "-d", `{}`, url+"/vmre.admin.v1.AdminService/ListVMs").Output()
	if err != nil || string(out) != "401" {
		t.Errorf("curl ListVMs without the token: %s %v; want 401", out, err)
	}

	// grpcurl: a stream, through the node's reflection.
	out, err = exec.CommandContext(t.Context(), grpcurl, "-plaintext", "-H", "authorization: Bearer "+testToken,
		"-d", `{"name":"alpha"}`, mux, "vmre.admin.v1.AdminService/TailLogs").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"message": "examplevm starting"`) {
		t.Errorf("grpcurl TailLogs: %v\n%s", err, out)
	}
	watch := startProc(t, testEnv(), grpcurl, "-plaintext", "-H", "authorization: Bearer "+testToken, mux, "vmre.admin.v1.AdminService/WatchVMs")
	watch.stdout.waitFor(t, "grpcurl's watch of alpha", 20*time.Second, func(l string) bool { return strings.Contains(l, `"name": "alpha"`) })
	watch.cmd.Process.Kill()

	// logs prints the backlog; logs -f follows alpha across a restart.
	if r := cli(t, env, "logs", "alpha"); r.code != exitOK || !strings.Contains(r.stdout, "examplevm starting") {
		t.Errorf("vmre logs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	follow := startProc(t, env, vmreBin, "logs", "-f", "alpha")
	follow.stdout.waitFor(t, "the backlog", 20*time.Second, func(l string) bool { return strings.Contains(l, "examplevm starting") })
	restart := cli(t, env, "restart", "alpha")
	if restart.code != exitOK || !strings.Contains(restart.stdout, "restarted alpha: running") {
		t.Fatalf("vmre restart: exit %d\n%s%s", restart.code, restart.stdout, restart.stderr)
	}
	p.stdout.waitFor(t, "alpha's new run", 20*time.Second, isState("alpha", "running", func(r record) bool {
		return int(r["pid"].(float64)) != pids["alpha"]
	}))
	starts := 0 // the backlog had the first run's
	follow.stdout.waitFor(t, "the new run's records", 20*time.Second, func(l string) bool {
		if strings.Contains(l, "examplevm starting") {
			starts++
		}
		return starts == 2
	})
	if code := follow.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Errorf("vmre logs -f: exit %d after SIGINT\n%s", code, follow.stderr)
	}

	// stop, stop again (a no-op that says so), start.
	if r := cli(t, env, "stop", "beta"); r.code != exitOK || r.stdout != "stopped beta\n" {
		t.Errorf("vmre stop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !pidGone(pids["beta"]) {
		t.Errorf("beta (pid %d) runs after vmre stop", pids["beta"])
	}
	if r := cli(t, env, "stop", "beta"); r.code != exitOK || !strings.Contains(r.stdout, "nothing to stop") {
		t.Errorf("vmre stop of a stopped VM: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, env, "start", "beta"); r.code != exitOK || !strings.Contains(r.stdout, "started beta: running") {
		t.Errorf("vmre start: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, env, "stop", "gamma"); r.code != exitNotFound || !strings.Contains(r.stderr, `no VM named "gamma" (names: alpha, beta)`) {
		t.Errorf("vmre stop of an unknown VM: exit %d\n%s", r.code, r.stderr)
	}

	if code := p.signal(t, syscall.SIGINT, 30*time.Second); code != exitOK {
		t.Fatalf("node: exit %d\n%s", code, p.stderr)
	}
	// The node took its address away: the clients find no node.
	if r := cli(t, env, "ps"); r.code != exitUnavailable || !strings.Contains(r.stderr, "no running node found") {
		t.Errorf("vmre ps with no node: exit %d\n%s", r.code, r.stderr)
	}
}

// TestNodeMetrics: after launches, a refused handshake, a crash with its
// restart and a stop, /metrics counts them all, parses as Prometheus text
// and passes promtool's lint.
func TestNodeMetrics(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; the README asks for Debian's prometheus package: apt-get install -y prometheus")
	}
	env := ownRunDir(t)
	p, mux, pids := startNodeOf(t, env, []string{"alpha", "beta"}, "--restart", "on-failure", "--backoff-initial", "100ms")
	url := "http://" + mux
	// A refused handshake: an unknown token.
	exec.CommandContext(t.Context(), curl, "-sS", "-X", "POST", "-H", "Content-Type: application/json", "-H", "Authorization: Bearer nope",
		"-d", `{"protocolVersion":1,"addr":"127.0.0.1:9"}`, url+"/vmre.runtime.v1.RuntimeService/Initialize").Run()
	// A crash: alpha killed by hand, restarted by its policy.
	syscall.Kill(pids["alpha"], syscall.SIGKILL)
	p.stdout.waitFor(t, "alpha back", 20*time.Second, isState("alpha", "running", func(r record) bool {
		return int(r["pid"].(float64)) != pids["alpha"]
	}))
	// A stop by an operator.
	if r := cli(t, env, "stop", "--node", url, "beta"); r.code != exitOK {
		t.Fatalf("vmre stop: %d\n%s", r.code, r.stderr)
	}

	scrape := getBody(t, url+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(scrape))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, scrape)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Fatalf("no metric %s", name)
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				case m.GetHistogram() != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vmre_launches_total", map[string]string{"vm": "alpha", "result": "ready"}, 2},
		{"vmre_launches_total", map[string]string{"vm": "beta", "result": "ready"}, 1},
		{"vmre_handshake_duration_seconds", map[string]string{"vm": "alpha"}, 2},
		{"vmre_vm_exits_total", map[string]string{"vm": "alpha", "how": "signal"}, 1},
		{"vmre_vm_exits_total", map[string]string{"vm": "beta", "how": "stopped"}, 1},
		{"vmre_vm_restarts_total", map[string]string{"vm": "alpha"}, 1},
		{"vmre_vm_restarts_total", map[string]string{"vm": "beta"}, 0},
		{"vmre_vms", map[string]string{"state": "running"}, 1},
		{"vmre_vms", map[string]string{"state": "stopped"}, 1},
		{"vmre_engine_calls_total", map[string]string{"method": "Initialize", "result": "unauthenticated"}, 1},
		{"vmre_engine_calls_total", map[string]string{"method": "Initialize", "result": "ok"}, 3},
		{"vmre_admin_calls_total", map[string]string{"method": "StopVM", "result": "ok"}, 1},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v; want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"vmre_vm_resident_memory_bytes", "vmre_vm_open_fds", "vmre_vm_start_time_seconds"} {
		if v := value(name, map[string]string{"vm": "alpha"}); v <= 0 {
			t.Errorf("%s{vm=alpha} = %v; want the running VM's figure", name, v)
		}
	}
	if lines := value("vmre_vm_output_lines_total", map[string]string{"vm": "alpha", "stream": "stderr", "level": "info"}); lines < 2 {
		t.Errorf("alpha's stderr info lines: %v", lines)
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("the host's Go collector is missing")
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pid" || l.GetName() == "addr" || l.GetName() == "token" {
					t.Errorf("%s has a label %s: cardinality must stay bounded", f.GetName(), l.GetName())
				}
			}
		}
	}
	check := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// TestListenBeyondLoopbackNeedsAToken: without an admin token file, a
// listen address beyond loopback is refused before anything binds: no
// listening event, exit 2, and the fix named. The address is never
// reached, so the test sends nothing beyond loopback.
func TestListenBeyondLoopbackNeedsAToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"node", "--plugin-dir", dir, "--listen", "0.0.0.0:0", "--events", "-"},
		{"node", "--plugin-dir", dir, "--listen", ":0", "--events", "-"},
		{"run", "--listen", "[::]:0", "--events", "-", exampleVM},
		{"node", "--plugin-dir", dir, "--metrics-token", "--events", "-"},
	} {
		r := runVMRE(t, 20*time.Second, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--admin-token-file") {
			t.Errorf("%v: exit %d; want 2 naming --admin-token-file\n%s", args, r.code, r.stderr)
		}
		if strings.Contains(r.stdout, `"event":"listening"`) {
			t.Errorf("%v: it listened before refusing", args)
		}
	}
}
