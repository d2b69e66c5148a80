//go:build linux

package node_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/server"
)

// crash-node DATADIR PLUGINDIR runs a node with remote VMs until it is
// killed, writing its state all the time: it prints the engine's
// fingerprint once it serves, then enrolls new remote VMs, rotates their
// tokens and far's through the admin API (as vmre remote rotate does),
// and stops and starts them, in a loop. It prints "rotating NAME" before
// each rotation and "token NAME TOKEN" once it is done.
func init() { helpers["crash-node"] = crashNode }

func crashNode(args []string) int {
	data, plugins := args[0], args[1]
	fmt.Println("started")
	serving := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	n, err := node.New(node.Config{PluginDir: plugins, DataDir: data, Listener: ln,
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
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, "http://"+ln.Addr().String())
	rotate := func(name string) bool {
		fmt.Println("rotating", name)
		res, err := admin.RotateEnrollment(ctx, connect.NewRequest(&adminv1.RotateEnrollmentRequest{Name: name}))
		if err != nil {
			fmt.Println("rotate:", err)
			return false
		}
		fmt.Println("token", name, res.Msg.GetEnrollment().GetToken())
		return true
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("vm%d-%d", os.Getpid(), i)
		os.WriteFile(filepath.Join(plugins, name+".remote"), []byte("{}"), 0o644)
		if _, err := n.Reload(ctx); err != nil {
			fmt.Println("reload:", err)
			return 1
		}
		if !rotate(name) || !rotate("far") {
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
// operators' stops), and starts it again: it always starts, the engine's
// fingerprint never changes once published, and each remote VM's token
// file holds a whole token: the one its last completed rotation gave, or,
// when the kill fell inside a rotation, that one or the new one.
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
	// tokens are the remote VMs' tokens as the helper's last completed
	// rotations gave them; rotating, those it was rotating when it died.
	tokens, rotating := map[string]string{}, map[string]bool{}
	rotations, interrupted := 0, 0
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
			if f := strings.Fields(line); len(f) > 1 && f[0] == "rotating" {
				rotating[f[1]] = true
				continue
			} else if len(f) == 3 && f[0] == "token" {
				tokens[f[1]], rotating[f[1]] = f[2], false
				rotations++
				continue
			}
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
		for name, token := range tokens {
			b, err := os.ReadFile(filepath.Join(data, "remote", name+".token"))
			got := strings.TrimSuffix(string(b), "\n")
			switch {
			case err != nil:
				t.Fatalf("round %d: %s's token file: %v", round, name, err)
			case got == token:
			case !rotating[name]:
				t.Fatalf("round %d: %s's token file holds %q; its last rotation, complete, gave %s", round, name, b, token)
			case !wholeToken.MatchString(string(b)):
				t.Fatalf("round %d: killed in a rotation of %s, its token file holds %q: neither the old token %s nor a whole new one", round, name, b, token)
			default:
				interrupted++
			}
			// What the next start reads.
			tokens[name], rotating[name] = got, false
		}
	}
	t.Logf("%d rotations completed; %d kills fell inside one and left its new token", rotations, interrupted)
	if rotations == 0 {
		t.Fatalf("no token rotation completed in %d rounds: the kills fell before any", rounds)
	}
	if published == "" {
		t.Fatalf("no round published a fingerprint in %d rounds", rounds)
	}
	// A last start, to its end: it starts, with the published fingerprint
	// and far's token as its file holds it.
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
	srv := httptest.NewServer(n.Handler())
	admin := adminv1connect.NewAdminServiceClient(srv.Client(), srv.URL)
	var en *adminv1.Enrollment
	if !vmretest.Eventually(func() bool {
		res, err := admin.GetEnrollment(t.Context(), connect.NewRequest(&adminv1.GetEnrollmentRequest{Name: "far"}))
		if err != nil {
			return false
		}
		en = res.Msg.GetEnrollment()
		return true
	}) {
		t.Errorf("far is not enrolled after the last start")
	} else if want := tokens["far"]; want != "" && en.GetToken() != want {
		t.Errorf("the last start enrolled far with %s; its file holds %s", en.GetToken(), want)
	}
	srv.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// wholeToken is a token file as the node writes it: one whole token.
var wholeToken = regexp.MustCompile(`^[0-9a-f]{` + strconv.Itoa(len(server.NewToken())) + `}\n$`)
