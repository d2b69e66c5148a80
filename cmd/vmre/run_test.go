//go:build unix

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/launcher"
)

func TestRunCheck(t *testing.T) {
	t.Parallel()
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		r := runInProcess(t, 30*time.Second, "run", "--check", "--log-format", "json", exampleVM)
		if r.code != exitOK {
			t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		hs := findRecord(t, r.stderr, "handshake succeeded")
		if pid, _ := hs["pid"].(float64); pid <= 0 {
			t.Errorf("handshake succeeded: pid %v", hs["pid"])
		}
		if addr, _ := hs["addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("handshake succeeded: addr %v", hs["addr"])
		}
		if v, _ := hs["protocol_version"].(float64); v != 1 {
			t.Errorf("handshake succeeded: protocol_version %v, want 1", hs["protocol_version"])
		}
		if elapsed, _ := hs["elapsed"].(float64); elapsed <= 0 {
			t.Errorf("handshake succeeded: elapsed %v", hs["elapsed"])
		}
		probe := findRecord(t, r.stderr, "health probe passed")
		if probe["probe"] != launcher.HealthGRPC || probe["status"] != "serving" {
			t.Errorf("health probe: %v", probe)
		}
		findRecord(t, r.stderr, "check passed")
		if r.stdout != "" {
			t.Errorf("stdout is not empty: %q", r.stdout)
		}
	})
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		r := runInProcess(t, 30*time.Second, "run", "--check", exampleVM)
		if r.code != exitOK {
			t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		var line string
		for l := range strings.Lines(r.stderr) {
			if strings.Contains(l, `msg="handshake succeeded"`) && !strings.Contains(l, "stream=") {
				line = l
			}
		}
		for _, want := range []string{" pid=", " addr=127.0.0.1:", " protocol_version=1", " elapsed="} {
			if !strings.Contains(line, want) {
				t.Errorf("handshake succeeded line lacks %q: %q\nstderr:\n%s", want, line, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "\x1b[") {
			t.Error("colored output on a pipe")
		}
	})
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	crash := writeScript(t, "crash", "echo 'cannot open /etc/myvm.toml' >&2\nexit 3\n")
	sleeper := writeScript(t, "sleeper", "exec sleep 30\n")
	missing := filepath.Join(t.TempDir(), "missing")
	envMissing := writeExecutable(t, "envmissing", "#!/usr/bin/env no-such-vmre-interpreter\n")
	noshebang := writeExecutable(t, "noshebang", "echo a shell would run this; exec does not\n")
	notExecInterp := filepath.Join(t.TempDir(), "interp")
	if err := os.WriteFile(notExecInterp, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badInterp := writeExecutable(t, "badinterp", "#!"+notExecInterp+"\n")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stderr  []string
		maxTime time.Duration
	}{
		{"version mismatch", []string{"--protocol-version", "7", exampleVM}, exitVersionMismatch,
			[]string{"protocol version mismatch vmre: 7 vm: 1", "the VM is older than the host"}, 0},
		{"never calls back", []string{"--handshake-timeout", "1s", exampleVM, "--no-handshake"}, exitHandshakeTimeout,
			[]string{"timeout", "within 1s"}, 0},
		{"not a VM", []string{"--handshake-timeout", "1s", sleeper}, exitHandshakeTimeout, []string{"timeout"}, 0},
		// A VM that exits at once is reported at once, not at the timeout.
		{"exits at once", []string{"--handshake-timeout", "30s", "/bin/false"}, exitVMExited,
			[]string{"the VM exited before its handshake: exit code 1"}, 10 * time.Second},
		{"crashes", []string{"--handshake-timeout", "30s", crash}, exitVMExited,
			[]string{"exit code 3", "cannot open /etc/myvm.toml"}, 10 * time.Second},
		{"missing plugin", []string{missing}, exitFailure,
			[]string{"handshake failed: exec " + missing + ": no such file or directory", "no such file: " + missing + ": check the path"}, 0},
		// The plugin is executable: chmod +x on it would change nothing.
		{"interpreter not executable", []string{badInterp}, exitFailure,
			[]string{"exec " + badInterp + ": permission denied", "the interpreter of its #! line is not executable"}, 0},
		{"interpreter not in PATH", []string{envMissing}, exitVMExited,
			[]string{"exit code 127", "its #! line runs no-such-vmre-interpreter, which is not in PATH: install no-such-vmre-interpreter"}, 0},
		{"script without #!", []string{noshebang}, exitFailure,
			[]string{"exec " + noshebang + ": exec format error", "a script needs a #! line to run: start the script with a #! line"}, 0},
		{"not in PATH", []string{"no-such-vmre-plugin"}, exitFailure,
			[]string{"executable file not found in $PATH", "give the plugin's path, for example ./no-such-vmre-plugin"}, 0},
		{"unknown flag", []string{"--nope", exampleVM}, exitUsage, []string{"flag provided but not defined: -nope", "vmre run --help"}, 0},
		{"no plugin", nil, exitUsage, []string{"missing PLUGIN"}, 0},
		{"bad log format", []string{"--log-format", "xml", exampleVM}, exitUsage, []string{`"xml" is not a log format`}, 0},
		{"bad log level", []string{"--log-level", "loud", exampleVM}, exitUsage, []string{"log-level"}, 0},
		{"version 0", []string{"--protocol-version", "0", exampleVM}, exitUsage, []string{"--protocol-version 0"}, 0},
		{"negative timeout", []string{"--handshake-timeout", "-1s", exampleVM}, exitUsage, []string{"must be positive"}, 0},
		{"zero timeout", []string{"--graceful-timeout", "0", exampleVM}, exitUsage, []string{"must be positive"}, 0},
		{"bad duration", []string{"--graceful-timeout", "soon", exampleVM}, exitUsage, []string{"graceful-timeout"}, 0},
		{"bad listen", []string{"--listen", "nonsense", exampleVM}, exitUsage, []string{"not a host:port"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, 30*time.Second, append([]string{"run"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstderr:\n%s", r.code, tc.code, r.stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if tc.maxTime > 0 && r.elapsed > tc.maxTime {
				t.Errorf("took %s, want under %s", r.elapsed, tc.maxTime)
			}
		})
	}
}

// A VM that ends on its own after its handshake ends run: exit 0 if it
// exited 0, else 1. The VM is a script that does the handshake with curl.
func TestRunVMExitsOnItsOwn(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	for _, tc := range []struct {
		vmExit, code int
	}{{0, exitOK}, {3, exitFailure}} {
		t.Run(fmt.Sprintf("vm exits %d", tc.vmExit), func(t *testing.T) {
			t.Parallel()
			// The VM lives a moment after its handshake: one that exited at
			// the very moment its handshake completed could be reported
			// either way by the launcher, which sees both at once.
			addr, listen := vmListener(t)
			vm := writeScript(t, "vm", listen+curlHandshake(curl, addr)+"sleep 0.2\nexit "+strconv.Itoa(tc.vmExit)+"\n")
			r := runVMRE(t, 30*time.Second, "run", "--events", "-", vm)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", r.code, tc.code, r.stderr)
			}
			exit, _ := findEvent(t, r.stdout, "exited")["exit"].(map[string]any)
			if exit["code"] != float64(tc.vmExit) || exit["stage"] != "none" {
				t.Errorf("exited: %v; want code %d on its own", exit, tc.vmExit)
			}
		})
	}
}

// vmsEntry is one VM of GET /v1/vms: the admin API's VM in protojson,
// with the proto's field names.
type vmsEntry struct {
	Name            string `json:"name"`
	Pid             int    `json:"pid"`
	Addr            string `json:"addr"`
	State           string `json:"state"`
	ProtocolVersion uint   `json:"protocol_version"`
	StartedAt       string `json:"started_at"`
	Handshake       string `json:"handshake"`
	Restarts        *int   `json:"restarts"`
}

func getVMs(t *testing.T, muxAddr string) []vmsEntry {
	t.Helper()
	resp, err := http.Get("http://" + muxAddr + "/v1/vms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("GET /v1/vms: %s, Content-Type %q", resp.Status, ct)
	}
	var list struct {
		VMs []vmsEntry `json:"vms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	return list.VMs
}

// startRun starts `vmre run --events -` and waits until the VM is ready;
// it returns the process (whose stdout carries the events), the mux
// address and the ready event.
func startRun(t *testing.T, args ...string) (*proc, string, record) {
	t.Helper()
	p := startVMRE(t, append([]string{"run", "--log-format", "json", "--events", "-"}, args...)...)
	mux := parseRecord(p.stdout.waitFor(t, "the listening event", 20*time.Second, isEvent("listening", nil)))
	ready := parseRecord(p.stdout.waitFor(t, "the ready event", 20*time.Second, isEvent("ready", nil)))
	return p, mux["addr"].(string), ready
}

func TestRunServesNodeMux(t *testing.T) {
	t.Parallel()
	p, muxAddr, hs := startRun(t, exampleVM)
	vmAddr, pid := hs["addr"].(string), int(hs["pid"].(float64))

	vms := getVMs(t, muxAddr)
	if len(vms) != 1 {
		t.Fatalf("GET /v1/vms: %d VMs, want 1: %+v", len(vms), vms)
	}
	if vm := vms[0]; vm.Pid != pid || vm.Addr != vmAddr || vm.State != "VM_STATE_RUNNING" || vm.Name != "examplevm" ||
		vm.ProtocolVersion != 1 || vm.StartedAt == "" || vm.Handshake == "" || vm.Restarts == nil || *vm.Restarts != 0 {
		t.Errorf("GET /v1/vms: %+v; want pid %d, addr %s, running", vm, pid, vmAddr)
	}

	resp, err := http.Get("http://" + muxAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %s %q", resp.Status, body)
	}

	httpClient := h2c.NewClient()
	defer httpClient.CloseIdleConnections()
	// grpc.health.v1 of the engine, through the mux.
	health, err := grpchealth.NewClient(httpClient, "http://"+muxAddr, connect.WithGRPC()).
		Check(t.Context(), &grpchealth.CheckRequest{Service: "vmre.runtime.v1.RuntimeService"})
	if err != nil || health.Status != grpchealth.StatusServing {
		t.Errorf("engine health through the mux: %v, %v", health, err)
	}

	// The VM's own service, at the address the handshake reported.
	chain := examplev1connect.NewChainServiceClient(httpClient, "http://"+vmAddr)
	built, err := chain.BuildBlock(t.Context(), connect.NewRequest(&examplev1.BuildBlockRequest{Data: []byte("hello")}))
	if err != nil {
		t.Fatalf("BuildBlock: %v", err)
	}
	last, err := chain.LastAccepted(t.Context(), connect.NewRequest(&examplev1.LastAcceptedRequest{}))
	if err != nil {
		t.Fatalf("LastAccepted: %v", err)
	}
	if b := last.Msg.GetBlock(); b.GetHeight() != 1 || b.GetId() != built.Msg.GetBlock().GetId() || string(b.GetData()) != "hello" {
		t.Errorf("LastAccepted = %v, want the block built: %v", b, built.Msg.GetBlock())
	}
	httpClient.CloseIdleConnections()

	if code := p.signal(t, syscall.SIGTERM, 20*time.Second); code != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0\nstderr:\n%s", code, p.stderr)
	}
	if !pidGone(pid) {
		t.Errorf("the VM (pid %d) still exists after vmre exited", pid)
	}
	exit, _ := parseRecord(p.stdout.waitFor(t, "the exited event", time.Second, isEvent("exited", nil)))["exit"].(map[string]any)
	if exit["code"] != 0.0 || exit["stage"] != "sigterm" {
		t.Errorf("exited: %v; want code 0 after SIGTERM", exit)
	}
}

// With --legacy the VM handshakes with gRPC on the launch's own listener,
// and the node mux still lists it. The VM is a script that sends the
// rpcchainvm Initialize with curl.
func TestRunLegacy(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	addr, listen := vmListener(t)
	body := legacyInitializeFrame(t, 1, addr)
	vm := writeScript(t, "legacyvm", listen+curl+` -sS --http2-prior-knowledge -o /dev/null -H 'Content-Type: application/grpc' \
  -H 'TE: trailers' --data-binary @`+body+` "http://$AVALANCHE_VM_RUNTIME_ENGINE_ADDR/vm.runtime.Runtime/Initialize" >&2 || exit 9
exec sleep 30
`)
	p, muxAddr, hs := startRun(t, "--legacy", "--graceful-timeout", "10s", vm)
	pid := int(hs["pid"].(float64))
	if hs["addr"] != addr {
		t.Errorf("ready: addr %v; want %s", hs["addr"], addr)
	}
	vms := getVMs(t, muxAddr)
	if len(vms) != 1 || vms[0].Pid != pid || vms[0].Addr != addr || vms[0].State != "VM_STATE_RUNNING" {
		t.Errorf("GET /v1/vms: %+v", vms)
	}
	if code := p.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Fatalf("exit %d after SIGINT, want 0\nstderr:\n%s", code, p.stderr)
	}
	if !pidGone(pid) {
		t.Errorf("the VM (pid %d) still exists after vmre exited", pid)
	}
}

// legacyInitializeFrame writes the gRPC frame of a vm.runtime
// InitializeRequest{protocol_version, addr} to a file, for curl.
func legacyInitializeFrame(t *testing.T, version byte, addr string) string {
	t.Helper()
	msg := append([]byte{0x08, version, 0x12, byte(len(addr))}, addr...)
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	path := filepath.Join(t.TempDir(), "initialize.bin")
	if err := os.WriteFile(path, append(frame, msg...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// curlHandshakeScript is a VM that completes the native handshake with
// curl, announcing vmAddr, then runs then.
func curlHandshakeScript(t *testing.T, curl, vmAddr, then string) string {
	t.Helper()
	return writeScript(t, "vm", curlHandshake(curl, vmAddr)+then+"\n")
}

// curlHandshake is the shell line of a native handshake with curl.
func curlHandshake(curl, vmAddr string) string {
	return curl + ` -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $VMRE_RUNTIME_ENGINE_TOKEN" -d '{"protocolVersion":1,"addr":"` + vmAddr + `"}' \
  "http://$VMRE_RUNTIME_ENGINE_ADDR/vmre.runtime.v1.RuntimeService/Initialize" >&2 || exit 9
`
}

// A VM without grpc.health.v1 gets a plain HTTP probe in --check.
func TestRunCheckWithoutHealthService(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	addr, listen := vmListener(t) // serves 404
	vm := writeScript(t, "vm", listen+curlHandshake(curl, addr)+"exec sleep 30\n")
	r := runInProcess(t, 30*time.Second, "run", "--check", "--log-format", "json", vm)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	probe := findRecord(t, r.stderr, "health probe passed")
	if status, _ := probe["status"].(string); probe["probe"] != launcher.HealthHTTP || !strings.Contains(status, "no grpc.health.v1 service") {
		t.Errorf("health probe: %v", probe)
	}

	// Nothing listens at the address this VM announces: the check fails.
	vm = curlHandshakeScript(t, curl, "127.0.0.1:9", "exec sleep 30")
	if r := runInProcess(t, 30*time.Second, "run", "--check", "--log-format", "json", vm); r.code != exitFailure {
		t.Errorf("unreachable VM: exit %d, want 1\nstderr:\n%s", r.code, r.stderr)
	}
}

// The first signal stops the VM gracefully; a second one kills it at once.
func TestRunSecondSignalKills(t *testing.T) {
	t.Parallel()
	curl := needCurl(t)
	// The VM ignores SIGTERM from its first line, before its handshake:
	// the first signal must not end it.
	addr, listen := vmListener(t)
	vm := writeScript(t, "stubborn", "trap '' TERM\n"+listen+curlHandshake(curl, addr)+"while :; do sleep 1; done\n")
	p, _, hs := startRun(t, "--graceful-timeout", "60s", vm)
	pid := int(hs["pid"].(float64))
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "SIGTERM to the VM", 10*time.Second, isEvent("stop_stage", func(r record) bool { return r["stage"] == "sigterm" }))
	if code := p.signal(t, syscall.SIGINT, 20*time.Second); code != exitOK {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", code, p.stderr)
	}
	if elapsed := time.Since(start); elapsed > 20*time.Second {
		t.Errorf("took %s to stop after the second signal; the graceful timeout is 60s", elapsed)
	}
	if !pidGone(pid) {
		t.Errorf("the VM (pid %d) still exists", pid)
	}
	kill := parseRecord(p.stdout.waitFor(t, "SIGKILL to the VM", time.Second, isEvent("stop_stage", func(r record) bool { return r["stage"] == "sigkill" })))
	if kill["reason"] != "the stop's context ended" {
		t.Errorf("SIGKILL for %q; want the second signal, which ends the stop's context", kill["reason"])
	}
	exit, _ := parseRecord(p.stdout.waitFor(t, "the exited event", time.Second, isEvent("exited", nil)))["exit"].(map[string]any)
	if exit["signal"] != "killed" || exit["stage"] != "sigkill" {
		t.Errorf("exited: %v; want killed by SIGKILL", exit)
	}
	// The operator reads why, before the SIGKILL it explains. vmre has
	// exited: its stderr has been read to the end.
	warning, sigkill := -1, -1
	for i, line := range p.stderr.lines() {
		switch {
		case warning < 0 && hostRecord("killing the VMs now, without waiting for their graceful timeout")(line):
			if r := parseRecord(line); r["level"] != "WARN" || r["reason"] != "received SIGINT" {
				t.Errorf("the second signal's record: %v; want a WARN with reason \"received SIGINT\"", r)
			}
			warning = i
		case sigkill < 0 && hostRecord("sending SIGKILL")(line):
			sigkill = i
		}
	}
	if warning < 0 || sigkill < 0 || warning > sigkill {
		t.Errorf("the second signal's warning is line %d, sending SIGKILL line %d; want the warning first\nstderr:\n%s", warning, sigkill, p.stderr)
	}
}
