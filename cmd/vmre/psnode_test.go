//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

func init() {
	// unwell: a VM that completes its handshake, then answers every
	// health check not serving and ignores SIGTERM, until SIGKILL.
	helpers["unwell"] = func([]string) int {
		signal.Ignore(syscall.SIGTERM)
		checker := grpchealth.NewStaticChecker()
		checker.SetStatus("", grpchealth.StatusNotServing)
		mux := http.NewServeMux()
		mux.Handle(grpchealth.NewHandler(checker))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go http.Serve(ln, mux)
		if _, err := client.Initialize(context.Background(), ln.Addr().String(), client.WithoutLease()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		select {}
	}
}

// startNodeInProcess runs vmre node on dir in the test's process with
// args, and returns it and the URL of its node mux.
func startNodeInProcess(t *testing.T, dir string, args ...string) (*inProc, string) {
	t.Helper()
	p := startInProcess(t, inVars(t, nil), append([]string{"node", "--plugin-dir", dir, "--data-dir", t.TempDir(),
		"--log-format", "json", "--events", "-"}, args...)...)
	mux := parseRecord(p.stdout.waitFor(t, "listening", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	return p, "http://" + mux
}

// TestPsOfAFailingVM: a VM that ran, then fails before its handshake on
// every attempt, shows that failure in vmre ps and ps --json (and
// GET /v1/vms, which serves the same JSON), never the exit of its earlier
// run.
func TestPsOfAFailingVM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "broken")
	script := "#!/bin/sh\nif [ -e " + marker + " ]; then echo 'cannot open /etc/quitter.toml' >&2; exit 3; fi\nexec " + exampleVM + "\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "quitter"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The script execs a file outside the plugin directory, which the
	// sandbox's default policy refuses: not what this test is about.
	p, url := startNodeInProcess(t, dir, "--sandbox", "off", "--restart", "on-failure", "--backoff-initial", "50ms", "--backoff-max", "400ms")
	ran := parseRecord(p.stdout.waitFor(t, "quitter running", 20*time.Second, isState("quitter", "running", nil)))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(ran["pid"].(float64)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The backoff after the killed run, then those after failed launches.
	p.stdout.waitFor(t, "quitter's third failed attempt", 20*time.Second, isState("quitter", "crashloop", func(r record) bool {
		return r["attempt"].(float64) >= 3
	}))

	ps := p.client(t, "ps", "--node", url)
	row := regexp.MustCompile(`(?m)^quitter +(\S+) .*$`).FindStringSubmatch(ps.stdout)
	if ps.code != exitOK || row == nil || !strings.Contains(row[0], "exit code 3") || strings.Contains(row[0], "killed") {
		t.Errorf("vmre ps: exit %d; want quitter's row with its last attempt's exit code 3, not the killed run\n%s%s", ps.code, ps.stdout, ps.stderr)
	}
	if row != nil && (row[1] == "crashloop" || row[1] == "backoff") && !strings.Contains(row[0], "the VM exited before its handshake: exit code 3") {
		t.Errorf("vmre ps: a VM in %s shows %q; want why its last attempt failed", row[1], row[0])
	}
	js := p.client(t, "ps", "--json", "--node", url)
	for _, want := range []string{`"name": "quitter"`, `"summary": "exit code 3 after `, `cannot open /etc/quitter.toml`,
		`the VM exited before its handshake`, `"restarts": `} {
		if !strings.Contains(js.stdout, want) {
			t.Errorf("vmre ps --json lacks %s:\n%s", want, js.stdout)
		}
	}
	if js.code != exitOK || strings.Contains(js.stdout, "killed") {
		t.Errorf("vmre ps --json: exit %d; it shows the earlier run's exit:\n%s%s", js.code, js.stdout, js.stderr)
	}
}

// TestPsOfAnUnhealthyVM: a VM that answers its liveness probes not
// serving is unhealthy, and vmre ps and ps --json say so with the probes'
// error while the node stops it (the VM ignores SIGTERM: it stays
// unhealthy for the graceful timeout, until the test kills it).
func TestPsOfAnUnhealthyVM(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\n" + vmretest.ModeKey + "=unwell exec " + self + "\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "unwell"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The script execs the test binary, outside the plugin directory,
	// which the sandbox's default policy refuses.
	p, url := startNodeInProcess(t, dir, "--sandbox", "off", "--liveness-interval", "100ms", "--liveness-failures", "2", "--graceful-timeout", "2m")
	unhealthy := parseRecord(p.stdout.waitFor(t, "unwell unhealthy", 20*time.Second, isState("unwell", "unhealthy", nil)))

	ps := p.client(t, "ps", "--node", url)
	pid := fmt.Sprint(unhealthy["pid"])
	row := `(?m)^unwell +unhealthy +` + pid + ` +\S+ +0 +unhealthy: 2 liveness probes failed in a row, 100ms apart; the last: .*not_serving`
	if ps.code != exitOK || !regexp.MustCompile(row).MatchString(ps.stdout) {
		t.Errorf("vmre ps: exit %d; want unwell unhealthy, its pid (it runs until stopped), with its probes' error\n%s%s",
			ps.code, ps.stdout, ps.stderr)
	}
	js := p.client(t, "ps", "--json", "--node", url)
	for _, want := range []string{`"state": "VM_STATE_UNHEALTHY"`, `"error": "unhealthy: 2 liveness probes failed in a row`, `"pid": ` + pid} {
		if !strings.Contains(js.stdout, want) {
			t.Errorf("vmre ps --json lacks %s:\n%s", want, js.stdout)
		}
	}
	// Its SIGTERM ignored, it would wait out the graceful timeout.
	if err := syscall.Kill(int(unhealthy["pid"].(float64)), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "unwell failed", 20*time.Second, isState("unwell", "failed", nil))
}

// vmre ps says why a VM failed before it ran long enough to have an exit
// of its own.
func TestPsShowsWhyAVMFailed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	quitter := "#!/bin/sh\necho 'cannot open /etc/quitter.toml' >&2\nexit 3\n"
	if err := vmretest.WriteExecutable(filepath.Join(dir, "quitter"), []byte(quitter), 0o755); err != nil {
		t.Fatal(err)
	}
	p, url := startNodeInProcess(t, dir)
	p.stdout.waitFor(t, "quitter failed", 20*time.Second, isState("quitter", "failed", nil))

	r := p.client(t, "ps", "--node", url)
	if r.code != exitOK || !regexp.MustCompile(`(?m)^quitter +failed .*the VM exited before its handshake: exit code 3`).MatchString(r.stdout) {
		t.Errorf("vmre ps: exit %d; want the failed VM's reason in its row\n%s%s", r.code, r.stdout, r.stderr)
	}
}
