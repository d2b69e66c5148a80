//go:build unix

package safetext_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// The "print" helper VM writes the bytes of outputKey (hex) to stdout and
// stderr, each followed by endMark on a line of its own, then serves.
const (
	outputKey = "VMRE_TEST_OUTPUT"
	binaryKey = "VMRE_TEST_BINARY"
	endMark   = "end of the fuzzed output"
)

// plugin is the plugin file of the fuzzed name: a script that runs the
// test binary, small to hash at every load.
const plugin = "#!/bin/sh\nexec \"$" + binaryKey + "\" \"$@\"\n"

// FuzzPipeline feeds an arbitrary plugin file name and arbitrary VM output
// through every place where bytes become text, in a real node: its
// registry loads the directory, its supervisor launches the VM (a real
// process) whose output goes to the admin service's backlog, its metrics
// are scraped over HTTP, its admin service answers Reload, ListVMs and
// TailLogs and GET /v1/vms answers over HTTP, and every text of theirs is
// rendered for a terminal. Nothing panics, every answer is valid, each
// rendering is printable UTF-8, a name that cannot name a VM is refused
// with a problem that shows it escaped, and the records after the fuzzed
// output arrive.
//
// make test fuzzes it for a bounded time, make fuzz for longer; plain go
// test runs its seeds.
func FuzzPipeline(f *testing.F) {
	for _, seed := range []struct{ name, output string }{
		{"good", "plain line\nanother"},
		{"bad\xffname", "x\xff\n"},
		{"esc\x1b[31mRED", "\x1b]0;PWNED\x07\x1b[2J"},
		{"evil\nfake", `{"level":"info","msg":"m\u001b[2J","k":"v"}`},
		{"vm.exe", "\xc3\x28\r\n\x00\n"},
		{"bidi\u202egnp", "\u009b31m\u2028"},
		{"\xed\xa0\x80", `{"level":"error","msg":"\xff","\xfe":"\xfd"}`},
	} {
		f.Add(seed.name, []byte(seed.output))
	}
	bin, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, name string, output []byte) {
		if name == "" || name == "." || name == ".." || len(name) > 200 || strings.ContainsAny(name, "/\x00") {
			t.Skip("not a file name")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(plugin), 0o755); err != nil {
			t.Skip(err)
		}
		states := make(chan supervise.VM, 64)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.New(node.Config{
			PluginDir: dir,
			Listener:  ln,
			Logger:    slog.New(vmretest.EnabledDiscard{}), // enabled: the backlog keeps the VM's records
			Launch: launcher.Config{Env: append(vmretest.Command("print").Env, binaryKey+"="+bin,
				outputKey+"="+hex.EncodeToString(output))},
			Hooks: &node.Hooks{State: func(vm supervise.VM) {
				select {
				case states <- vm:
				default:
				}
			}},
		})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- n.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		url := "http://" + ln.Addr().String()
		client := adminv1connect.NewAdminServiceClient(vmretest.HTTP1Client(t), url)

		// The registry: a VM, or a problem that names the file escaped.
		var id string
		switch {
		case strings.HasPrefix(name, "."): // a dotfile: skipped
		case !safetext.Printable(name):
		default:
			for s := range states {
				if s.State == supervise.StateRunning {
					id = s.Name
					break
				}
				if s.State != supervise.StateStarting {
					t.Fatalf("VM %q is %v: %v", s.Name, s.State, s.Err)
				}
			}
		}
		reload, err := client.Reload(t.Context(), connect.NewRequest(&adminv1.ReloadRequest{}))
		if err != nil {
			t.Fatalf("Reload: %v", err)
		}
		for _, p := range reload.Msg.GetFailed() {
			printable(t, "reload failure", p.GetEntry(), p.GetVm(), p.GetKind(), p.GetError())
		}
		if !strings.HasPrefix(name, ".") && !safetext.Printable(name) {
			if f := reload.Msg.GetFailed(); len(f) != 1 || f[0].GetEntry() != safetext.Terminal(name) || f[0].GetKind() != "bad name" {
				t.Fatalf("name %q: failures %v; want it refused as a bad name, shown as %s", name, f, safetext.Terminal(name))
			}
		}
		if id == "" {
			return
		}

		// Admin: every record up to the marks of both streams, then the VMs.
		tail, err := client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: id, Follow: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer tail.Close()
		marks := map[string]bool{}
		for len(marks) < 2 && tail.Receive() {
			r := tail.Msg().GetRecord()
			printable(t, "log record", r.GetMessage(), r.GetLevel(), r.GetStream())
			for _, a := range r.GetAttrs() {
				printable(t, "log attribute", a.GetKey(), a.GetValue())
			}
			if r.GetMessage() == endMark {
				marks[r.GetStream()] = true
			}
		}
		if len(marks) < 2 {
			t.Fatalf("TailLogs ended before the records after the output (%v): %v", marks, tail.Err())
		}
		list, err := client.ListVMs(t.Context(), connect.NewRequest(&adminv1.ListVMsRequest{}))
		if err != nil {
			t.Fatalf("ListVMs: %v", err)
		}
		if len(list.Msg.GetVms()) != 1 || list.Msg.GetVms()[0].GetName() != id {
			t.Fatalf("ListVMs: %v; want VM %q", list.Msg.GetVms(), id)
		}
		for _, v := range list.Msg.GetVms() {
			printable(t, "VM", v.GetName(), v.GetAddr(), v.GetError(), v.GetState().String())
		}

		// The node's JSON of its VMs and its metrics: valid, and valid UTF-8.
		if body := get(t, url+"/v1/vms"); !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("GET /v1/vms: not valid JSON:\n%s", body)
		}
		body := get(t, url+"/metrics")
		if !utf8.Valid(body) || !strings.Contains(string(body), fmt.Sprintf("vmre_vm_restarts_total{vm=%q}", id)) {
			t.Fatalf("GET /metrics: valid UTF-8 %v, VM listed %v:\n%s", utf8.Valid(body),
				strings.Contains(string(body), "vmre_vm_restarts_total"), body)
		}
	})
}

// get answers a GET of url, failing the test unless it is 200 OK.
func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := vmretest.HTTP1Client(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return body
}

// printable renders each text for a terminal, as a client does, and fails
// unless what it writes is valid UTF-8 without control characters but
// tabs.
func printable(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if !utf8.ValidString(s) {
			t.Fatalf("%s: %q is not valid UTF-8", what, s)
		}
		if out := safetext.Terminal(s); !safetext.Printable(out) {
			t.Fatalf("%s: %q renders as %q, which a terminal would act on", what, s, out)
		}
	}
}

// printVM is the "print" helper: the fuzzed output, then the marks, then a
// VM that serves until it is stopped.
func printVM([]string) int {
	out, err := hex.DecodeString(os.Getenv(outputKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, w := range []io.Writer{os.Stdout, os.Stderr} {
		fmt.Fprintf(w, "%s\n%s\n", out, endMark)
	}
	return serveVM()
}
