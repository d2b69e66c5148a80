//go:build unix

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmretest.WriteExecutable(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// isState matches the state event of vm in state for which cond (when
// not nil) holds.
func isState(vm, state string, cond func(record) bool) func(string) bool {
	return isEvent("state", func(r record) bool {
		return r["vm"] == vm && r["state"] == state && (cond == nil || cond(r))
	})
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		out = append(out, s.(string))
	}
	slices.Sort(out)
	return out
}

// TestNode runs `vmre node` on a directory of two copies of the example
// VM, one named by an alias, next to a file that is not executable and a
// copy whose pin does not match: the two run, the two others are refused
// and skipped. A VM killed by hand comes back with a new pid after its
// backoff; a SIGHUP adds a new file; Ctrl-C stops them all.
func TestNode(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, exampleVM, filepath.Join(dir, "alpha"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dir, "beta.exe"), 0o755)
	copyFile(t, exampleVM, filepath.Join(dir, "mallory"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("not a VM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	aliases := filepath.Join(t.TempDir(), "aliases.json")
	if err := os.WriteFile(aliases, []byte(`{"beta": ["b", "bee"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256File(t, exampleVM)
	pins := filepath.Join(t.TempDir(), "pins.sha256")
	pinLines := sum + "  alpha\n" + sum + "  beta.exe\n" + strings.Repeat("0", 64) + "  mallory\n" + sum + "  gamma\n"
	if err := os.WriteFile(pins, []byte(pinLines), 0o644); err != nil {
		t.Fatal(err)
	}
	// gamma is pinned before its file exists: the first load reports it
	// missing, the reload after it is copied in adds it.
	p := startVMRE(t, "node", "--plugin-dir", dir, "--data-dir", t.TempDir(), "--aliases", aliases, "--pins", pins,
		"--restart", "on-failure", "--backoff-initial", "100ms", "--log-format", "json", "--events", "-")
	mux := parseRecord(p.stdout.waitFor(t, "listening", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	load := parseRecord(p.stdout.waitFor(t, "the first load", 20*time.Second, isEvent("reload", nil)))
	if got := strs(load["added"]); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Errorf("loaded %v; want alpha and beta", got)
	}
	if got := strs(load["failed"]); !slices.Equal(got, []string{"gamma", "mallory", "notes"}) {
		t.Errorf("refused %v; want gamma (missing), mallory (pin), notes (not executable)", got)
	}
	alpha := parseRecord(p.stdout.waitFor(t, "alpha running", 20*time.Second, isState("alpha", "running", nil)))
	p.stdout.waitFor(t, "beta running", 20*time.Second, isState("beta", "running", nil))
	for _, want := range []string{`"entry":"mallory","kind":"pin mismatch"`, `"entry":"notes","kind":"not executable"`} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("the log does not say why an entry was refused: %s", want)
		}
	}

	var list struct {
		VMs []map[string]any `json:"vms"`
	}
	if err := json.Unmarshal([]byte(getBody(t, "http://"+mux+"/v1/vms")), &list); err != nil {
		t.Fatal(err)
	}
	vms := list.VMs
	if len(vms) != 2 {
		t.Fatalf("GET /v1/vms: %v; want alpha and beta", vms)
	}
	for _, vm := range vms {
		if vm["state"] != "VM_STATE_RUNNING" || vm["pinned"] != true || vm["digest"] != sum || vm["pid"] == nil {
			t.Errorf("GET /v1/vms: %v; want running, pinned, digest %s", vm, sum)
		}
		if vm["name"] == "beta" && !slices.Equal(strs(vm["aliases"]), []string{"b", "bee"}) {
			t.Errorf("beta's aliases %v; want b, bee", vm["aliases"])
		}
	}

	// Kill alpha by hand: on-failure launches it again after its backoff.
	oldPid := int(alpha["pid"].(float64))
	if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "alpha's backoff", 20*time.Second, isState("alpha", "backoff", nil))
	back := parseRecord(p.stdout.waitFor(t, "alpha back", 20*time.Second, isState("alpha", "running", func(r record) bool {
		return int(r["pid"].(float64)) != oldPid
	})))

	// A reload adds gamma, now in the directory, and leaves the others.
	copyFile(t, exampleVM, filepath.Join(dir, "gamma"), 0o755)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reload := parseRecord(p.stdout.waitFor(t, "the reload", 20*time.Second, isEvent("reload", func(r record) bool {
		return slices.Contains(strs(r["added"]), "gamma")
	})))
	if got := strs(reload["unchanged"]); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Errorf("reload: unchanged %v; want alpha, beta", got)
	}
	gamma := parseRecord(p.stdout.waitFor(t, "gamma running", 20*time.Second, isState("gamma", "running", nil)))

	if code := p.signal(t, syscall.SIGINT, 30*time.Second); code != exitOK {
		t.Fatalf("exit %d after SIGINT; want 0\nstderr:\n%s", code, p.stderr)
	}
	for _, pid := range []int{int(back["pid"].(float64)), int(gamma["pid"].(float64))} {
		if !pidGone(pid) {
			t.Errorf("VM pid %d outlived the node", pid)
		}
	}
}

func TestNodeUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"--plugin-dir", t.TempDir(), "extra"}, {"--plugin-dir", t.TempDir(), "--require-pins"},
		{"--plugin-dir", t.TempDir(), "--restart", "sometimes"}, {"--plugin-dir", t.TempDir(), "--name", "x"}} {
		r := runInProcess(t, 10*time.Second, append([]string{"node"}, args...)...)
		if r.code != exitUsage {
			t.Errorf("node %v: exit %d; want 2\nstderr:\n%s", args, r.code, r.stderr)
		}
	}
	// --name names one VM: node names each by its file, and does not offer it.
	if r := runInProcess(t, 10*time.Second, "node", "--help"); r.code != exitOK || strings.Contains(r.stdout+r.stderr, "--name") {
		t.Errorf("node --help: exit %d, and it offers --name:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runInProcess(t, 10*time.Second, "node", "--plugin-dir", filepath.Join(t.TempDir(), "missing"))
	if r.code == exitOK || !strings.Contains(r.stderr, "missing") {
		t.Errorf("node on a missing directory: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
}

// getBody GETs url and returns its body, failing the test unless it is 200.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}
