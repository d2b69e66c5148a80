//go:build linux

package examples_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// call-vm ADDR CERT_SHA256 is the node's side calling a remote VM's own
// RPC over TLS, pinned to the certificate the VM announced (package
// tlspin): Connect with JSON, which both examples serve.
func init() {
	helpers["call-vm"] = func(args []string) int { return vmretest.CallVM(args[0], args[1], connect.WithProtoJSON()) }
}

// events are a process's JSON lines, collected as they come.
type events struct {
	mu   sync.Mutex
	all  []map[string]any
	more chan struct{}
	done chan struct{}
}

// started starts cmd and collects the JSON lines of its stdout; the
// test's cleanup stops it with SIGINT, then SIGKILL.
func started(t *testing.T, cmd *exec.Cmd) *events {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ev := &events{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(ev.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				ev.mu.Lock()
				ev.all = append(ev.all, r)
				ev.mu.Unlock()
				select {
				case ev.more <- struct{}{}:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-ev.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-ev.done
		}
	})
	return ev
}

// await returns the first line for which match holds, waiting up to 30 s.
func (ev *events) await(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for seen := 0; ; {
		ev.mu.Lock()
		for ; seen < len(ev.all); seen++ {
			if match(ev.all[seen]) {
				r := ev.all[seen]
				ev.mu.Unlock()
				return r
			}
		}
		ev.mu.Unlock()
		select {
		case <-ev.more:
		case <-ev.done:
			t.Fatalf("the process ended before %s", what)
		case <-deadline:
			t.Fatalf("no %s within 30s", what)
		}
	}
}

// farIs matches the node's state event of the VM far in state, when cond
// (if set) holds.
func farIs(state string, cond func(map[string]any) bool) func(map[string]any) bool {
	return func(r map[string]any) bool {
		return r["event"] == "state" && r["vm"] == "far" && r["state"] == state && (cond == nil || cond(r))
	}
}

// TestRemoteAcrossNamespaces: each example runs as a remote VM in a
// network namespace of its own, its node in another, joined by a veth
// pair: it handshakes over TLS, the node's side calls its RPC pinned to
// the certificate it announced (Go's tlspin, and curl to its public key),
// a cut link makes it lost on the node and makes the VM exit 75 by its own
// pings, and on the restored link a new process runs again.
func TestRemoteAcrossNamespaces(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed; the README asks for it: apt-get install -y curl")
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			n := vmretest.NewNetnsPair(t)
			const ping = 500 * time.Millisecond
			plugins := t.TempDir()
			if err := os.WriteFile(filepath.Join(plugins, "far.remote"), []byte(`{}`), 0o644); err != nil {
				t.Fatal(err)
			}
			nodeEnv := append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir(), "NO_COLOR=1")
			engineAddr := n.NodeIP + ":9443"
			nodeCmd := n.Command(n.Node, vmreBin, "node", "--plugin-dir", plugins, "--data-dir", t.TempDir(),
				"--engine-listen", engineAddr, "--remote-ping", ping.String(), "--events", "-")
			nodeCmd.Env = nodeEnv
			node := started(t, nodeCmd)
			// The client is given the node: its discovery file may come a
			// moment after its events.
			mux := node.await(t, "the node mux", func(r map[string]any) bool { return r["event"] == "listening" })["addr"].(string)
			node.await(t, "the TLS engine", func(r map[string]any) bool { return r["event"] == "engine_listening" })

			envCmd := n.Command(n.Node, vmreBin, "remote", "env", "--node", "http://"+mux, "far")
			envCmd.Env = nodeEnv
			out, err := envCmd.Output()
			if err != nil {
				t.Fatalf("vmre remote env: %v", err)
			}
			vmEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), client.ListenAddrKey + "=" + n.VMIP + ":9650"}
			for line := range strings.Lines(string(out)) {
				vmEnv = append(vmEnv, strings.TrimSpace(line))
			}
			if !strings.Contains(string(out), vmre.EnginePingKey+"="+ping.String()) {
				t.Fatalf("vmre remote env gives no ping of %s:\n%s", ping, out)
			}
			startVM := func() (*exec.Cmd, <-chan int) {
				cmd := n.Command(n.VM, ex.command[0], ex.command[1:]...)
				cmd.Env, cmd.Stderr = vmEnv, t.Output()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited, done := make(chan int, 1), make(chan struct{})
				go func() {
					defer close(done)
					cmd.Wait()
					exited <- cmd.ProcessState.ExitCode()
				}()
				t.Cleanup(func() {
					cmd.Process.Signal(syscall.SIGTERM)
					select {
					case <-done:
					case <-time.After(20 * time.Second):
						cmd.Process.Kill()
						<-done
					}
				})
				return cmd, exited
			}

			// It handshakes over TLS, and the node publishes its address
			// and certificate.
			_, exited := startVM()
			up := node.await(t, "far running", farIs("running", nil))
			addr, sum, spki := up["addr"], up["cert_sha256"], up["cert_spki_sha256"]
			if addr != n.VMIP+":9650" || sum == nil || spki == nil {
				t.Fatalf("running: %v; want %s:9650, a certificate and its public key's pin", up, n.VMIP)
			}
			call := n.Command(n.Node, os.Args[0], addr.(string), sum.(string))
			call.Env = append(vmretest.Env(), vmretest.ModeKey+"=call-vm")
			if out, err := call.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "block "+genesisID() {
				t.Errorf("the node's side calls the VM, pinned: %v\n%s", err, out)
			}
			health := n.Command(n.Node, curl, "-sS", "-k", "--pinnedpubkey", "sha256//"+spki.(string), "https://"+addr.(string)+"/grpc.health.v1.Health/Check")
			if out, err := health.CombinedOutput(); err != nil || string(out) != "SERVING\n" {
				t.Errorf("curl --pinnedpubkey of the VM's health: %v %q; want SERVING", err, out)
			}

			// A cut link: lost on the node; the VM, hearing nothing for
			// twice the ping, exits 75.
			n.SetLink(t, false)
			lost := node.await(t, "far lost", farIs("lost", nil))
			if why := fmt.Sprint(lost["error"]); !strings.HasPrefix(why, "ping timeout") && !strings.HasPrefix(why, "link error") {
				t.Errorf("lost: %s; want a ping timeout or a link error", why)
			}
			select {
			case code := <-exited:
				if code != client.ExitRestart {
					t.Errorf("the VM of the cut link exited %d; want %d", code, client.ExitRestart)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the VM of the cut link still runs after 30s")
			}

			// Restored, its orchestrator's next start runs again.
			n.SetLink(t, true)
			cmd, exited := startVM()
			node.await(t, "far running again", farIs("running", func(r map[string]any) bool { return r["peer"] != up["peer"] }))
			cmd.Process.Signal(syscall.SIGTERM)
			if code := <-exited; code != 0 {
				t.Errorf("the VM stopped by SIGTERM exited %d; want 0", code)
			}
		})
	}
}
