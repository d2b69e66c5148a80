//go:build unix

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// startServe starts `vmre serve --events` and returns it with the
// variables it printed, once it has printed want lines, and its events.
func startServe(t *testing.T, want int, args ...string) (*proc, map[string]string, *lines) {
	t.Helper()
	path, events := eventsFIFO(t)
	p := startVMRE(t, append([]string{"serve", "--log-format", "json", "--events", path}, args...)...)
	n := 0
	p.stdout.waitFor(t, "the engine's variables", 20*time.Second, func(string) bool { n++; return n == want })
	vars := make(map[string]string)
	for _, line := range p.stdout.lines() {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("stdout line %q is not KEY=VALUE", line)
		}
		vars[k] = v
	}
	return p, vars, events
}

// stopServe interrupts serve and checks that it exits 0 and printed
// exactly want lines on stdout.
func stopServe(t *testing.T, p *proc, want int) {
	t.Helper()
	if code := p.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Fatalf("serve: exit %d after SIGINT, want 0\nstderr:\n%s", code, p.stderr)
	}
	if out := p.stdout.lines(); len(out) != want {
		t.Errorf("stdout has %d lines, want exactly %d:\n%s", len(out), want, strings.Join(out, "\n"))
	}
}

func curlInitialize(t *testing.T, curl, addr, token string, version int) string {
	t.Helper()
	args := []string{"-sS", "-X", "POST", "-H", "Content-Type: application/json",
		"-d", `{"protocolVersion":` + strconv.Itoa(version) + `,"addr":"127.0.0.1:9"}`,
		"http://" + addr + "/vmre.runtime.v1.RuntimeService/Initialize"}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	out, err := exec.CommandContext(t.Context(), curl, args...).Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return string(out)
}

func TestServeCurlHandshake(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	p, vars, events := startServe(t, 2)
	addr, token := vars[vmre.EngineAddressKey], vars[vmre.EngineTokenKey]
	if !strings.HasPrefix(addr, "127.0.0.1:") || len(token) != 64 {
		t.Fatalf("stdout: %v", vars)
	}
	if listening := parseRecord(events.waitFor(t, "the listening event", 10*time.Second, isEvent("listening", nil))); listening["addr"] != addr {
		t.Errorf("listening at %v; stdout says %s", listening["addr"], addr)
	}
	call := func(result string) func(string) bool {
		return isEvent("engine_call", func(r record) bool { return r["result"] == result })
	}

	if out := curlInitialize(t, curl, addr, "", 1); !strings.Contains(out, `"code":"unauthenticated"`) {
		t.Errorf("without the token: %s, want unauthenticated", out)
	}
	events.waitFor(t, "the refused call", 10*time.Second, call("unauthenticated"))
	if out := curlInitialize(t, curl, addr, token, 2); !strings.Contains(out, "protocol version mismatch vmre: 1 vm: 2") {
		t.Errorf("another version: %s, want a mismatch", out)
	}
	events.waitFor(t, "the refused version", 10*time.Second, call("failed_precondition"))
	if out := curlInitialize(t, curl, addr, token, 1); !strings.Contains(out, `"hostName":"vmre"`) {
		t.Errorf("with the token: %s, want the host's answer", out)
	}
	if ok := parseRecord(events.waitFor(t, "the handshake", 10*time.Second, call("ok"))); ok["addr"] != "127.0.0.1:9" || ok["protocol_version"] != 1.0 {
		t.Errorf("accepted call %v; want addr 127.0.0.1:9, version 1", ok)
	}
	// The token is spent: a second handshake is refused.
	if out := curlInitialize(t, curl, addr, token, 1); !strings.Contains(out, `"code":"already_exists"`) {
		t.Errorf("second handshake: %s, want already_exists", out)
	}
	stopServe(t, p, 2)

	// serve logs every attempt with its outcome, the mismatch with a hint.
	log := p.stderr.String()
	for _, want := range []string{`"msg":"call refused"`, `"code":"unauthenticated"`, `"code":"failed_precondition"`,
		`"hint":"the VM is newer than the host`, `"msg":"call accepted"`, `"code":"already_exists"`} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's log lacks %s:\n%s", want, log)
		}
	}
}

// A VM started by hand with serve's two variables handshakes, keeps its
// lease while serve runs, and shuts down when serve stops.
func TestServeHandStartedVM(t *testing.T) {
	t.Parallel()
	p, vars, events := startServe(t, 2)
	env := append(os.Environ(),
		vmre.EngineAddressKey+"="+vars[vmre.EngineAddressKey], vmre.EngineTokenKey+"="+vars[vmre.EngineTokenKey])
	vm := startProc(t, env, exampleVM)
	events.waitFor(t, "the VM's lease", 20*time.Second, isEvent("engine_call", func(r record) bool {
		return r["procedure"] == "/vmre.runtime.v1.RuntimeService/Lease" && r["result"] == "ok"
	}))
	select {
	case <-vm.done:
		t.Fatalf("the VM exited while serve runs:\n%s", vm.stderr)
	default:
	}
	stopServe(t, p, 2)
	if code := vm.wait(t, 20*time.Second); code != 0 {
		t.Errorf("the VM exited %d after serve stopped, want 0:\n%s", code, vm.stderr)
	}
}

func TestServeLegacy(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	p, vars, events := startServe(t, 1, "--legacy")
	addr, ok := vars[launcher.AvalancheEngineAddressKey]
	if !ok || len(vars) != 1 || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("stdout: %v, want the single line %s=ADDR", vars, launcher.AvalancheEngineAddressKey)
	}
	body := legacyInitializeFrame(t, 1, "127.0.0.1:9")
	out, err := exec.CommandContext(t.Context(), curl, "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
		"-w", "%{http_code}", "-H", "Content-Type: application/grpc", "-H", "TE: trailers",
		"--data-binary", "@"+body, "http://"+addr+"/vm.runtime.Runtime/Initialize").Output()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl: %s %v", out, err)
	}
	events.waitFor(t, "the legacy handshake", 10*time.Second, isEvent("engine_call", func(r record) bool {
		return r["procedure"] == "/vm.runtime.Runtime/Initialize" && r["result"] == "ok" && r["addr"] == "127.0.0.1:9"
	}))
	stopServe(t, p, 1)
}

func TestServeUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"extra"}, {"--protocol-version", "0"}, {"--listen", "nope"}, {"--nope"}} {
		r := runInProcess(t, 10*time.Second, append([]string{"serve"}, args...)...)
		if r.code != exitUsage || r.stdout != "" {
			t.Errorf("serve %v: exit %d, stdout %q; want 2 and nothing\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
}
