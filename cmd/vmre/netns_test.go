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

// netnsPair is two network namespaces joined by a veth pair: the node's,
// at 10.213.N.1, and the remote VM's, at 10.213.N.2. The addresses exist
// only inside them.
type netnsPair struct {
	node, vm         string // the namespaces' names
	nodeIP, vmIP     string
	nodeLink, vmLink string // the veth ends
}

// newNetnsPair makes the namespaces, or skips the test where they cannot
// be made (not root, no ip, no CAP_NET_ADMIN): make test runs as root in CI.
func newNetnsPair(t *testing.T) *netnsPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root: this test runs in CI, which runs make test as root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip command (Debian's iproute2) to make network namespaces")
	}
	id := os.Getpid() % 100000
	n := &netnsPair{
		node: fmt.Sprintf("vmre-node-%d", id), vm: fmt.Sprintf("vmre-vm-%d", id),
		nodeIP: fmt.Sprintf("10.213.%d.1", id%250), vmIP: fmt.Sprintf("10.213.%d.2", id%250),
		nodeLink: fmt.Sprintf("vn%d", id), vmLink: fmt.Sprintf("vv%d", id),
	}
	run := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", n.node); err != nil {
		t.Skipf("network namespaces cannot be made here: %v", err)
	}
	t.Cleanup(func() { run("netns", "del", n.node) })
	steps := [][]string{
		{"netns", "add", n.vm},
		{"link", "add", n.nodeLink, "type", "veth", "peer", "name", n.vmLink},
		{"link", "set", n.nodeLink, "netns", n.node},
		{"link", "set", n.vmLink, "netns", n.vm},
		{"-n", n.node, "addr", "add", n.nodeIP + "/24", "dev", n.nodeLink},
		{"-n", n.vm, "addr", "add", n.vmIP + "/24", "dev", n.vmLink},
		{"-n", n.node, "link", "set", n.nodeLink, "up"},
		{"-n", n.vm, "link", "set", n.vmLink, "up"},
		{"-n", n.node, "link", "set", "lo", "up"},
		{"-n", n.vm, "link", "set", "lo", "up"},
	}
	for i, step := range steps {
		if err := run(step...); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Cleanup(func() { run("netns", "del", n.vm) }) // takes the veth pair with it
		}
	}
	return n
}

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
	engineAddr := n.nodeIP + ":9443"
	node := startIn(t, env, n.node, vmreBin, "node", "--plugin-dir", remoteDir(t), "--data-dir", t.TempDir(),
		"--engine-listen", engineAddr, "--remote-ping", ping.String(), "--events", "-", "--log-format", "json")
	node.stdout.waitFor(t, "the TLS engine", 20*time.Second, isEvent("engine_listening", nil))
	envOut, stderr, code := runIn(t, env, n.node, vmreBin, "remote", "env", "far")
	if code != 0 {
		t.Fatalf("vmre remote env: %d\n%s", code, stderr)
	}
	vars := remoteEnv(t, envOut)
	if vars[vmre.EngineAddressKey] != engineAddr {
		t.Fatalf("the engine's address %s; want %s", vars[vmre.EngineAddressKey], engineAddr)
	}
	vmEnv := func(overrides map[string]string) []string {
		e := append(vmretest.Env(), client.ListenAddrKey+"="+n.vmIP+":9650")
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
	vm := startIn(t, vmEnv(nil), n.vm, exampleVM)
	up := parseRecord(node.stdout.waitFor(t, "far running", 20*time.Second, isFar("running", nil)))
	peer, vmAddr, certSum := up["peer"].(string), up["addr"].(string), up["cert_sha256"].(string)
	if !strings.HasPrefix(peer, n.vmIP+":") || vmAddr != n.vmIP+":9650" || len(certSum) != 64 {
		t.Fatalf("running: %v; want the VM's address %s:9650 and a certificate", up, n.vmIP)
	}

	// The host calls the VM's own RPC across the link, over TLS pinned to
	// the certificate the VM announced.
	callArgs := []string{"netns", "exec", n.node, os.Args[0], vmAddr, certSum}
	call := exec.CommandContext(t.Context(), "ip", callArgs...)
	call.Env = append(vmretest.Env(), vmretest.ModeKey+"=call-vm")
	if out, err := call.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "block ") {
		t.Fatalf("the host's call of the VM: %v\n%s", err, out)
	}

	// Refusals, none of which changes the node's view of the VM.
	unchanged := func(what string) {
		t.Helper()
		out, stderr, code := runIn(t, env, n.node, vmreBin, "ps", "--json")
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
	_, stderr, code = runIn(t, vmEnv(map[string]string{vmre.EngineCertKey: strings.Repeat("0", 64), client.ListenAddrKey: n.vmIP + ":0"}), n.vm, exampleVM)
	if code != 1 || !strings.Contains(stderr, "is not the one "+vmre.EngineCertKey+" names") {
		t.Errorf("a VM with a wrong fingerprint: exit %d\n%s", code, stderr)
	}
	unchanged("a wrong fingerprint")
	_, stderr, code = runIn(t, vmEnv(map[string]string{vmre.EngineTokenKey: strings.Repeat("f", 64), client.ListenAddrKey: n.vmIP + ":0"}), n.vm, exampleVM)
	if code != 1 || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("a VM with a wrong token: exit %d\n%s", code, stderr)
	}
	unchanged("a wrong token")
	_, stderr, code = runIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.vmIP + ":9651"}), n.vm, exampleVM)
	if code != 1 || !strings.Contains(stderr, "already_exists") {
		t.Errorf("a second VM with the same token: exit %d\n%s", code, stderr)
	}
	unchanged("a second VM")
	status, _, _ := runIn(t, env, n.vm, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
		"-H", "Content-Type: application/json", "-d", "{}", "http://"+engineAddr+"/vmre.runtime.v1.RuntimeService/Initialize")
	if status != "400" {
		t.Errorf("plain text on the TLS port: HTTP %s; want 400", status)
	}
	unchanged("plain text on the TLS port")

	// Cut the link: the node's pings go unanswered, and the VM is lost.
	cut := time.Now()
	if _, stderr, code := runIn(t, env, n.vm, "ip", "link", "set", n.vmLink, "down"); code != 0 {
		t.Fatal(stderr)
	}
	node.stdout.waitFor(t, "far lost", 20*time.Second, isFar("lost", nil))
	detected := time.Since(cut)
	t.Logf("a cut link was noticed in %s (pings every %s, answered within %s)", detected.Round(time.Millisecond), ping, ping)
	// The bound is the claim: a ping after a silent interval, its answer
	// within the timeout, and room for a loaded machine.
	if limit := 2*ping + 5*time.Second; detected > limit {
		t.Errorf("the cut link was noticed after %s; want within %s", detected, limit)
	}
	// Its orchestrator would restart the VM: here the test kills the old
	// one, restores the link, and starts another, which runs again.
	vm.cmd.Process.Kill()
	vm.wait(t, 20*time.Second)
	if _, stderr, code := runIn(t, env, n.vm, "ip", "link", "set", n.vmLink, "up"); code != 0 {
		t.Fatal(stderr)
	}
	startIn(t, vmEnv(nil), n.vm, exampleVM)
	back := parseRecord(node.stdout.waitFor(t, "far back", 30*time.Second, isFar("running", func(r record) bool { return r["peer"] != peer })))

	// A rotated token: the session ends, the old token is refused, the new
	// one works.
	rotated, stderr, code := runIn(t, env, n.node, vmreBin, "remote", "rotate", "far")
	if code != 0 {
		t.Fatalf("vmre remote rotate: %d\n%s", code, stderr)
	}
	newVars := remoteEnv(t, rotated)
	node.stdout.waitFor(t, "the rotated session's end", 20*time.Second, isFar("lost", func(r record) bool {
		return strings.Contains(fmt.Sprint(r["error"]), "the node ended the session")
	}))
	_, stderr, code = runIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.vmIP + ":9652"}), n.vm, exampleVM)
	if code != 1 || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("a VM with the rotated-out token: exit %d\n%s", code, stderr)
	}
	vars = newVars
	startIn(t, vmEnv(map[string]string{client.ListenAddrKey: n.vmIP + ":9653"}), n.vm, exampleVM)
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
