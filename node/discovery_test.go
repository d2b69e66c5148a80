//go:build linux

package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
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

// TestDiscoveryBeforeAnyState: a client told of a VM's first change
// finds the node's discovery file, and the node's HTTP at its URL; the
// file goes when Run returns.
func TestDiscoveryBeforeAnyState(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	found := make(chan []node.Announcement, 1)
	var once sync.Once
	n, err := node.New(node.Config{PluginDir: pluginDir(t, "alpha"), DataDir: t.TempDir(), Listener: ln, DiscoveryDir: dir,
		Logger: vmretest.Logger(t),
		Hooks: &node.Hooks{State: func(supervise.VM) {
			once.Do(func() {
				a, err := node.Discover(dir)
				if err != nil {
					t.Error(err)
				}
				found <- a
			})
		}}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if a, _ := node.Discover(dir); len(a) != 0 {
			t.Errorf("discovery files after Run: %v", a)
		}
	}()
	var a []node.Announcement
	select {
	case a = <-found:
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("no change of a VM within %s", vmretest.WaitTimeout)
	}
	if len(a) != 1 || a[0].URL != "http://"+ln.Addr().String() {
		t.Fatalf("at the first change of a VM the discovery directory holds %v; want the node's URL", a)
	}
	if body := get(t, a[0].URL+"/healthz"); body != "ok\n" {
		t.Errorf("GET /healthz at the discovered URL: %q", body)
	}
}
