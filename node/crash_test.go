//go:build linux

package node_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
)

// crash-node DATADIR PLUGINDIR runs a node with remote VMs until it is
// killed, writing its state all the time: it prints the engine's
// fingerprint once it serves, then enrolls new remote VMs, rotates their
// tokens, and stops and starts them, in a loop.
func init() { helpers["crash-node"] = crashNode }

func crashNode(args []string) int {
	data, plugins := args[0], args[1]
	fmt.Println("started")
	serving := make(chan string, 1)
	n, err := node.New(node.Config{PluginDir: plugins, DataDir: data, Addr: "127.0.0.1:1",
		Remote: node.RemoteConfig{Listen: "127.0.0.1:0"},
		Hooks:  &node.Hooks{EngineListening: func(_, sum string) { serving <- sum }}})
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case sum := <-serving:
		fmt.Println("fingerprint", sum)
	case err := <-done:
		fmt.Println("run:", err)
		return 1
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("vm%d-%d", os.Getpid(), i)
		os.WriteFile(filepath.Join(plugins, name+".remote"), []byte("{}"), 0o644)
		if _, err := n.Reload(ctx); err != nil {
			fmt.Println("reload:", err)
			return 1
		}
		n.Stop(ctx, name)
		n.Start(ctx, name)
		n.Stop(ctx, name)
		select {
		case err := <-done:
			fmt.Println("run:", err)
			return 1
		default:
		}
	}
}

// TestCrashConsistency kills a node with SIGKILL at random points while it
// writes its state (its first start, enrollments, token rotations,
// operators' stops), and starts it again: it always starts, and the
// engine's fingerprint never changes once published.
func TestCrashConsistency(t *testing.T) {
	t.Parallel()
	data, plugins := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(plugins, "far.remote"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	const rounds = 25
	published := ""
	// span is how long a start takes from the helper's first line to its
	// fingerprint, as the first round measures it: the kills of the later
	// rounds fall anywhere in twice that, so that, whatever the machine's
	// speed, some fall before the fingerprint (the first writes) and some
	// after (enrollments, rotations, stops).
	var span time.Duration
	for round := range rounds {
		cmd := vmretest.Command("crash-node", data, plugins)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A node that never gets as far as its fingerprint is killed too,
		// and the round fails below for want of it.
		guard := time.AfterFunc(time.Minute, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(out)
		var lines []string
		var kill *time.Timer
		var began time.Time
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "started":
				began = time.Now()
				if round > 0 {
					kill = time.AfterFunc(rand.N(2*span+time.Millisecond), func() { cmd.Process.Signal(syscall.SIGKILL) })
				}
				continue
			case round == 0 && strings.HasPrefix(line, "fingerprint "):
				// The first round publishes, then dies while it writes.
				span = time.Since(began)
				kill = time.AfterFunc(rand.N(span+time.Millisecond), func() { cmd.Process.Signal(syscall.SIGKILL) })
			}
			lines = append(lines, line)
		}
		guard.Stop()
		if kill != nil {
			kill.Stop()
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if round == 0 && span == 0 {
			t.Fatalf("the first start published no fingerprint: %s", strings.Join(lines, "\n"))
		}
		for _, line := range lines {
			sum, ok := strings.CutPrefix(line, "fingerprint ")
			switch {
			case !ok:
				t.Fatalf("round %d: the node failed: %s", round, strings.Join(lines, "\n"))
			case published == "":
				published = sum
			case sum != published:
				t.Fatalf("round %d: the engine's fingerprint changed from %s to %s", round, published, sum)
			}
		}
	}
	if published == "" {
		t.Fatalf("no round published a fingerprint in %d rounds", rounds)
	}
	// A last start, to its end: it starts, with the published fingerprint.
	n, err := node.New(node.Config{PluginDir: plugins, DataDir: data, Addr: "127.0.0.1:1", Remote: node.RemoteConfig{Listen: "127.0.0.1:0"},
		KeepProcess: true}) // in the test binary: see startNode
	if err != nil {
		t.Fatalf("after %d kills: %v", rounds, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	if _, sum := n.RemoteEngine(); sum != published {
		t.Errorf("the last start's fingerprint %s; published %s", sum, published)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
