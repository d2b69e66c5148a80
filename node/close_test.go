//go:build linux

package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
)

// TestCloseWithoutRun: a node made and never run releases on Close what
// New took: the sealed copies of its pinned files (memfds), its listener,
// and its collectors in the embedder's registry, which then takes another
// node's. Run after Close fails; Close again does nothing. It does not
// run in parallel: TestNodeClosesOldVersions counts every memfd.
func TestCloseWithoutRun(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"alpha", "beta"} { // bytes of this test alone
		copyFile(t, exampleVM, filepath.Join(dir, name), []byte("TestCloseWithoutRun"))
	}
	pins := filepath.Join(t.TempDir(), "pins.sha256")
	b, err := os.ReadFile(filepath.Join(dir, "alpha"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	line := hex.EncodeToString(sum[:])
	if err := os.WriteFile(pins, []byte(line+"  alpha\n"+line+"  beta\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	newNode := func() (*node.Node, net.Listener) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.New(node.Config{PluginDir: dir, Pins: pins, RequirePins: true, DataDir: t.TempDir(),
			Listener: ln, Registerer: reg, Logger: vmretest.Logger(t)})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		return n, ln
	}

	fds := memfds(t, sum)
	n, ln := newNode()
	if got := memfds(t, sum) - fds; got != 2 {
		t.Fatalf("%d sealed copies after New of 2 pinned VMs; want 2", got)
	}
	if _, err := node.New(node.Config{PluginDir: dir, Addr: "127.0.0.1:1", Registerer: reg}); err == nil {
		t.Fatal("a second node's collectors were taken while the first holds them")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got := memfds(t, sum) - fds; got != 0 {
		t.Errorf("%d sealed copies left after Close; want 0", got)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener after Close: %v; want closed", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if err := n.Run(t.Context()); err == nil {
		t.Error("Run after Close succeeded")
	}
	// The registry takes another node's collectors now.
	again, _ := newNode()
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
