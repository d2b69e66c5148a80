package vmretest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// NetnsPair is two network namespaces joined by a veth pair: a node's, at
// 10.213.N.1, and a remote VM's, at 10.213.N.2. The addresses exist only
// inside them, so the tests that use them reach nothing beyond.
type NetnsPair struct {
	Node, VM         string // the namespaces' names
	NodeIP, VMIP     string
	NodeLink, VMLink string // the veth ends
}

// netnsCount tells apart the pairs of one test process.
var netnsCount atomic.Int32

// NewNetnsPair makes the namespaces, removed when the test ends. Where
// they cannot be made (not root, no ip, no CAP_NET_ADMIN) it skips the
// test saying why, except under CI=true, where it fails it: CI runs make
// test as root, and a test that skips there proves nothing.
func NewNetnsPair(t *testing.T) *NetnsPair {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("network namespaces need root: this test runs in CI, which runs make test as root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		skip("no ip command (Debian's iproute2) to make network namespaces")
	}
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, netnsCount.Add(1)%10)
	sub := (os.Getpid()*10 + int(netnsCount.Load())) % 250
	n := &NetnsPair{
		Node: "vmre-node-" + id, VM: "vmre-vm-" + id,
		NodeIP: fmt.Sprintf("10.213.%d.1", sub), VMIP: fmt.Sprintf("10.213.%d.2", sub),
		NodeLink: "vn" + id, VMLink: "vv" + id,
	}
	run := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", n.Node); err != nil {
		skip("network namespaces cannot be made here: %v", err)
	}
	t.Cleanup(func() { run("netns", "del", n.Node) })
	steps := [][]string{
		{"netns", "add", n.VM},
		{"link", "add", n.NodeLink, "type", "veth", "peer", "name", n.VMLink},
		{"link", "set", n.NodeLink, "netns", n.Node},
		{"link", "set", n.VMLink, "netns", n.VM},
		{"-n", n.Node, "addr", "add", n.NodeIP + "/24", "dev", n.NodeLink},
		{"-n", n.VM, "addr", "add", n.VMIP + "/24", "dev", n.VMLink},
		{"-n", n.Node, "link", "set", n.NodeLink, "up"},
		{"-n", n.VM, "link", "set", n.VMLink, "up"},
		{"-n", n.Node, "link", "set", "lo", "up"},
		{"-n", n.VM, "link", "set", "lo", "up"},
	}
	for i, step := range steps {
		if err := run(step...); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Cleanup(func() { run("netns", "del", n.VM) }) // takes the veth pair with it
		}
	}
	return n
}

// Command is the command that runs name with args in the namespace ns.
func (n *NetnsPair) Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// SetLink brings the VM's end of the link down (a cut link) or up.
func (n *NetnsPair) SetLink(t *testing.T, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "-n", n.VM, "link", "set", n.VMLink, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s: %v: %s", n.VMLink, state, err, out)
	}
}
