//go:build linux

package node_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmre/vmre/node"
)

// TestDiscoverByNamespace: a client finds the nodes of its own network
// namespace, and is told of those of others rather than given a URL whose
// loopback it cannot reach.
func TestDiscoverByNamespace(t *testing.T) {
	t.Parallel()
	here, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no network namespace to read: %v", err)
	}
	pid := os.Getpid() // a process that runs
	write := func(dir, name string, a node.Announcement) {
		t.Helper()
		b, _ := json.Marshal(a)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := node.Announcement{URL: "http://127.0.0.1:8081", Pid: pid, NetNS: "net:[1]"}

	dir := t.TempDir()
	write(dir, "node-net1-"+strconv.Itoa(pid)+".json", other)
	found, err := node.Discover(dir)
	var elsewhere *node.ElsewhereError
	if len(found) != 0 || !errors.As(err, &elsewhere) || elsewhere.NetNS != here || len(elsewhere.Nodes) != 1 ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)+" in net:[1]") {
		t.Fatalf("Discover with a node of another namespace: %v, %v; want an ElsewhereError naming it", found, err)
	}
	mine := node.Announcement{URL: "http://127.0.0.1:8080", Pid: pid, NetNS: here}
	write(dir, "node-mine.json", mine)
	if found, err := node.Discover(dir); err != nil || len(found) != 1 || found[0] != mine {
		t.Errorf("Discover with a node of each: %v, %v; want this namespace's alone", found, err)
	}
}
