//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// netnsPair is vmretest's pair of namespaces, a node's and a VM's.
type netnsPair = vmretest.NetnsPair

// newNetnsPair makes the namespaces, or skips the test where they cannot
// be made (but under CI=true): make test runs as root in CI.
func newNetnsPair(t *testing.T) *netnsPair { return vmretest.NewNetnsPair(t) }

// in returns the argv that runs name with args in namespace ns.
func in(ns string, name string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns, name}, args...)
}

// startIn starts a process in a namespace.
func startIn(t *testing.T, env []string, ns string, name string, args ...string) *proc {
	t.Helper()
	argv := in(ns, name, args...)
	return startProc(t, env, argv[0], argv[1:]...)
}

// runIn runs a process in a namespace to its end.
func runIn(t *testing.T, env []string, ns string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return stdout.String(), stderr.String(), code
}

// TestRemoteVMAcrossNamespaces: a node in one network namespace, a remote
// VM in another, joined by a veth pair. The VM handshakes over TLS; the
// host calls its RPC across the link; a wrong fingerprint, a wrong token,
// a rotated token and plain text on the TLS port are refused and change
// nothing; cutting the link makes the VM lost within the lease's detection
// time, and a restarted VM on the restored link runs again.
func TestRemoteVMAcrossNamespaces(t *testing.T) {
	t.Parallel()
	n := newNetnsPair(t)
	curl := needCurl(t)
	const ping = 500 * time.Millisecond // the node's pings: lost within 1s of a silent link
	env := ownRunDir(t)
	engineAddr := n.NodeIP + ":9443"
	node := startIn(t, env, n.Node, vmreBin, "node", "--plugin-dir", remoteDir(t), "--data-dir", t.TempDir(),
		"--engine-listen", engineAddr, "--remote-ping", ping.String(), "--events", "-", "--log-format", "json")
	mux := "http://" + parseRecord(node.stdout.waitFor(t, "the node mux", 20*time.Second, isEvent("listening", nil)))["addr"].(string)
	node.stdout.waitFor(t, "the TLS engine", 20*time.Second, isEvent("engine_listening", nil))
	envOut, stderr, code := runIn(t, env, n.Node, vmreBin, "remote", "env", "--node", mux, "far")
	if code != 0 {
		t.Fatalf("vmre remote env: %d\n%s", code, stderr)
	}
	vars := remoteEnv(t, envOut)
	if vars[vmre.EngineAddressKey] != engineAddr {
		t.Fatalf("the engine's address %s; want %s", vars[vmre.EngineAddressKey], engineAddr)
	}
	vmEnv := func(overrides map[string]string) []string {
		e := append(vmretest.Env(), client.ListenAddrKey+"="+n.VMIP+":9650")
		for k, v := range vars {
			e = append(e, k+"="+v)
		}
		for k, v := range overrides {
			e = append(e, k+"="+v) // the last of a name wins
		}
		return e
	}
	isFar := func(state string, cond func(record) bool) func(string) bool { return isState("far", state, cond) }

	// The VM, in its namespace, handshakes over TLS.
	vm := startIn(t, vmEnv(nil), n.VM, exampleVM)
	up := parseRecord(node.stdout.waitFor(t, "far running", 20*time.Second, isFar("running", nil)))
	peer, vmAddr, certSum := up["peer"].(string), up["addr"].(string), up["cert_sha256"].(string)
	if !strings.HasPrefix(peer, n.VMIP+":") || vmAddr != n.VMIP+":9650" || len(certSum) != 64 || up["cert_spki_sha256"] == nil {
		t.Fatalf("running: %v; want the VM's address %s:9650, a certificate and its public key's pin", up, n.VMIP)
	}
	// A client in another namespace does not find the node: its URL is a
	// loopback address of the node's namespace.
	if r := cli(t, env, "ps"); r.code == exitOK || !strings.Contains(r.stderr, "no node runs in this network namespace") {
		t.Errorf("vmre ps outside the node's namespace: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// curl, pinned to the public key the node publishes, over the link.
	health, _, _ := runIn(t, env, n.Node, curl, "-sS", "-k", "--pinnedpubkey", "sha256//"+up["cert_spki_sha256"].(string),
		"https://"+vmAddr+"/grpc.health.v1.Health/Check")
	if health != "SERVING\n" {
		t.Errorf("curl --pinnedpubkey of the VM's health: %q; want SERVING", health)
	}

	// The host calls the VM's own RPC across the link, over TLS pinned to
	// the certificate the VM announced.
	callArgs := []string{"netns", "exec", n.Node, os.Args[0], vmAddr, certSum}
	call := exec.CommandContext(t.Context(), "ip", callArgs...)
	call.Env = append(vmretest.Env(), vmretest.ModeKey+"=call-vm")
	if out, err := call.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "block ") {
		t.Fatalf("the host's call of the VM: %v\n%s", err, out)
	}

	// Refusals, none of which changes the node's view of the VM.
	unchanged := func(what string) {
		t.Helper()
		out, stderr, code := runIn(t, env, n.Node, vmreBin, "ps", "--node", mux, "--json")
		var list struct {
			Vms []struct {
				State, Peer string
			} `json:"vms"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Vms) != 1 ||
			list.Vms[0].State != "VM_STATE_RUNNING" || list.Vms[0].Peer != peer {
			t.Errorf("after %s, the node's view changed: %d %s %s", what, code, out, stderr)
		}
	}
	_, stderr, code = runIn(t, vmEnv(map[string]string{vmre.EngineCertKey: strings.Repeat("0", 64), client.ListenAddrKey: n.VMIP + ":0"}), n.VM, exampleVM)
	if code != 1 || !strings.Contains(stderr, "is not the one "+vmre.EngineCertKey+" names") {
		t.Errorf("a VM with a wrong fingerprint: exit %d\n%s", code, stderr)
	}
	unchanged("a wrong fingerprint")
	_, stderr, code = runIn(t, vmEnv(map[string]string{vmre.EngineTokenKey: strings.Repeat("f", 64), client.ListenAddrKey: n.VMIP + ":0"}), n.VM, exampleVM)
	if code != 1 || !strings.Contains(stderr, "unauthenticated") || !strings.Contains(stderr, "vmre remote env NAME") {
		t.Errorf("a VM with a wrong token: exit %d\n%s", code, stderr)
	}
	unchanged("a wrong token")
	_, stderr, code = runIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.VMIP + ":9651"}), n.VM, exampleVM)
	if code != 1 || !strings.Contains(stderr, "already_exists") || !strings.Contains(stderr, `another process holds VM \"far\"'s enrollment`) {
		t.Errorf("a second VM with the same token: exit %d\n%s", code, stderr)
	}
	unchanged("a second VM")
	status, _, _ := runIn(t, env, n.VM, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
		"-H", "Content-Type: application/json", "-d", "{}", "http://"+engineAddr+"/vmre.runtime.v1.RuntimeService/Initialize")
	if status != "400" {
		t.Errorf("plain text on the TLS port: HTTP %s; want 400", status)
	}
	unchanged("plain text on the TLS port")

	// Cut the link: the node's pings go unanswered, and the VM is lost.
	cut := time.Now()
	n.SetLink(t, false)
	lost := parseRecord(node.stdout.waitFor(t, "far lost", 20*time.Second, isFar("lost", nil)))
	detected := time.Since(cut)
	if why := fmt.Sprint(lost["error"]); !strings.HasPrefix(why, "ping timeout") && !strings.HasPrefix(why, "link error") {
		t.Errorf("lost: %s; want a ping timeout or a link error", why)
	}
	t.Logf("a cut link was noticed in %s (pings every %s, answered within %s)", detected.Round(time.Millisecond), ping, ping)
	// The bound is the claim: a ping after a silent interval, its answer
	// within the timeout, and room for a loaded machine.
	if limit := 2*ping + 5*time.Second; detected > limit {
		t.Errorf("the cut link was noticed after %s; want within %s", detected, limit)
	}
	// The VM notices too, by its own pings (vmre remote env gave it the
	// node's), and exits for its orchestrator to start it again; here the
	// test restores the link and starts another, which runs again.
	if code := vm.wait(t, 20*time.Second); code != client.ExitRestart {
		t.Errorf("the VM of the cut link exited %d; want %d\n%s", code, client.ExitRestart, vm.stderr)
	}
	n.SetLink(t, true)
	startIn(t, vmEnv(nil), n.VM, exampleVM)
	back := parseRecord(node.stdout.waitFor(t, "far back", 30*time.Second, isFar("running", func(r record) bool { return r["peer"] != peer })))

	// A rotated token: the session ends, the old token is refused, the new
	// one works.
	rotated, stderr, code := runIn(t, env, n.Node, vmreBin, "remote", "rotate", "--node", mux, "far")
	if code != 0 {
		t.Fatalf("vmre remote rotate: %d\n%s", code, stderr)
	}
	newVars := remoteEnv(t, rotated)
	node.stdout.waitFor(t, "the rotated session's end", 20*time.Second, isFar("lost", func(r record) bool {
		return strings.Contains(fmt.Sprint(r["error"]), "the node ended the session")
	}))
	_, stderr, code = runIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.VMIP + ":9652"}), n.VM, exampleVM)
	if code != 1 || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("a VM with the rotated-out token: exit %d\n%s", code, stderr)
	}
	vars = newVars
	startIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.VMIP + ":9653"}), n.VM, exampleVM)
	node.stdout.waitFor(t, "far with its new token", 30*time.Second, isFar("running", func(r record) bool { return r["peer"] != back["peer"] }))

	if code := node.signal(t, syscall.SIGINT, 30*time.Second); code != exitOK {
		t.Errorf("node: exit %d\n%s", code, node.stderr)
	}
}

// A node mux listening on every interface warns that it reaches beyond
// loopback, though the address it dials itself (and logs) is 127.0.0.1.
// The node runs in a network namespace of its own whose only interface is
// loopback, so that the test reaches nothing beyond it.
func TestRunWarnsBeyondLoopback(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root: this test runs in CI, which runs make test as root")
	}
	ns := fmt.Sprintf("vmre-lo-%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("network namespaces cannot be made here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	const warning = "the node mux listens beyond loopback"
	for _, tc := range []struct {
		listen string
		warns  bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		_, stderr, code := runIn(t, ownRunDir(t), ns, vmreBin, "run", "--check", "--listen", tc.listen, "--admin-token-file", tokenFile(t), exampleVM)
		if code != exitOK {
			t.Fatalf("--listen %s: exit %d\n%s", tc.listen, code, stderr)
		}
		if got := strings.Contains(stderr, warning); got != tc.warns {
			t.Errorf("--listen %s: warns %v, want %v\n%s", tc.listen, got, tc.warns, stderr)
		}
	}
}
