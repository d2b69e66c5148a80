package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// binaryKey names the test binary for a plugin that runs it as a helper.
const binaryKey = "VMRE_TEST_BINARY"

func init() {
	// survivor-node DATADIR PLUGINDIR: a node whose VMs ignore SIGTERM and
	// their lease, as VMs that outlive a killed node do. It prints
	// "survivor=PID killed=BOOL" for each VM a previous run left and it
	// stopped, then "running=PID" once its VM runs, and runs until killed.
	helpers["survivor-node"] = func(args []string) int {
		bin, err := os.Executable()
		if err != nil {
			fmt.Println("executable:", err)
			return 1
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("listen:", err)
			return 1
		}
		n, err := node.New(node.Config{DataDir: args[0], PluginDir: args[1], Listener: ln,
			Launch: launcher.Config{GracefulTimeout: 300 * time.Millisecond,
				Env: append(vmretest.Command("stubborn").Env, binaryKey+"="+bin)},
			Hooks: &node.Hooks{
				Survivor: func(s node.SurvivorInfo) { fmt.Printf("survivor=%d killed=%t\n", s.Pid, s.Killed) },
				State: func(vm supervise.VM) {
					if vm.State == supervise.StateRunning {
						fmt.Printf("running=%d\n", vm.Pid)
					}
				},
			}})
		if err != nil {
			fmt.Println("new:", err)
			return 1
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := n.Run(ctx); err != nil {
			fmt.Println("run:", err)
			return 1
		}
		return 0
	}
	// stubborn: a VM that ignores SIGTERM and its lease: it handshakes,
	// then serves nothing until it is killed.
	helpers["stubborn"] = func([]string) int {
		signal.Ignore(syscall.SIGTERM)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 1
		}
		if _, err := client.Initialize(context.Background(), ln.Addr().String()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for {
			time.Sleep(time.Hour)
		}
	}
}

// survivorNode starts a "survivor-node" on data and plugins, and returns
// it with the lines of its stdout.
func survivorNode(t *testing.T, data, plugins string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := vmretest.Command("survivor-node", data, plugins)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(out)
}

// next returns the rest of the next line that starts with prefix.
func next(t *testing.T, sc *bufio.Scanner, prefix string) string {
	t.Helper()
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return rest
		}
	}
	t.Fatalf("no line %q... from the node: %v", prefix, sc.Err())
	return ""
}

// TestNoDuplicateAfterSIGKILL: a node killed with SIGKILL leaves running a
// VM that ignores SIGTERM and its lease. Started again on the same data
// directory, the node stops that VM (SIGTERM, then SIGKILL after the
// graceful timeout) before it launches anything: the VM never runs twice.
func TestNoDuplicateAfterSIGKILL(t *testing.T) {
	t.Parallel()
	data, plugins := t.TempDir(), t.TempDir()
	plugin := "#!/bin/sh\nexec \"$" + binaryKey + "\" \"$@\"\n"
	if err := os.WriteFile(filepath.Join(plugins, "stubborn"), []byte(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	first, out := survivorNode(t, data, plugins)
	old, _ := strconv.Atoi(next(t, out, "running="))
	t.Cleanup(func() { syscall.Kill(old, syscall.SIGKILL) })
	// The record reaches the disk off the launch's path: wait until it
	// names the VM before the node dies.
	if !vmretest.Eventually(func() bool {
		b, _ := os.ReadFile(filepath.Join(data, "running.json"))
		return strings.Contains(string(b), fmt.Sprintf(`"pid": %d`, old)) && strings.Contains(string(b), `"exe"`)
	}) {
		t.Fatal("the record of the running VMs never named the VM")
	}
	first.Process.Kill()
	first.Wait()
	if vmretest.ProcessGone(old) {
		t.Fatalf("the VM %d died with its node: it survives nothing, and the test proves nothing", old)
	}

	second, out := survivorNode(t, data, plugins)
	var survivors []string
	fresh := 0
	for fresh == 0 && out.Scan() {
		if rest, ok := strings.CutPrefix(out.Text(), "survivor="); ok {
			survivors = append(survivors, rest)
		}
		if rest, ok := strings.CutPrefix(out.Text(), "running="); ok {
			fresh, _ = strconv.Atoi(rest)
		}
	}
	if fresh != 0 {
		t.Cleanup(func() { syscall.Kill(fresh, syscall.SIGKILL) }) // should the node's stop below fail
	}
	if want := fmt.Sprintf("%d killed=true", old); len(survivors) != 1 || survivors[0] != want {
		t.Errorf("before its VM ran, the node stopped %q; want the VM %d, killed after its graceful timeout", survivors, old)
	}
	if !vmretest.ProcessGone(old) {
		t.Errorf("the old VM %d still runs beside the new one %d", old, fresh)
	}
	if fresh == old || vmretest.ProcessGone(fresh) {
		t.Errorf("the new VM %d does not run", fresh)
	}
	// The node's own stop ends the VM, which ignores SIGTERM, after its
	// graceful timeout: a test that killed the node would leave it.
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Errorf("the node's stop: %v", err)
	}
	if !vmretest.ProcessGone(fresh) {
		t.Errorf("the node stopped, and its VM %d still runs", fresh)
	}
}
