//go:build unix

package safetext_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/registry"
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
// through every place where bytes become text: the registry loads the
// directory, the supervisor launches the VM (a real process) under a
// launcher whose log feeds the admin service's backlog, the metrics are
// scraped, the admin service answers ListVMs, Reload and TailLogs over
// HTTP, and every text of theirs is rendered for a terminal. Nothing
// panics, every answer is valid, each rendering is printable UTF-8, a name
// that cannot name a VM is refused with a problem that shows it escaped,
// and the records after the fuzzed output arrive.
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
	logs := admin.NewLogs(0)
	l, err := launcher.New(launcher.Config{Logger: slog.New(logs.Handler(vmretest.EnabledDiscard{})),
		GracefulTimeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })

	f.Fuzz(func(t *testing.T, name string, output []byte) {
		if name == "" || name == "." || name == ".." || len(name) > 200 || strings.ContainsAny(name, "/\x00") {
			t.Skip("not a file name")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(plugin), 0o755); err != nil {
			t.Skip(err)
		}
		reg, _, err := registry.Load(registry.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		states := make(chan supervise.VM, 64)
		sup, err := supervise.New(supervise.Config{Launcher: supervise.FromLauncher(l), Hooks: &supervise.Hooks{State: func(vm supervise.VM) {
			select {
			case states <- vm:
			default:
			}
		}}})
		if err != nil {
			t.Fatal(err)
		}
		defer sup.Close(context.Background())
		m, err := metrics.New(metrics.Config{VMs: sup.List, Output: l.OutputStats})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := admin.New(admin.Config{Supervisor: sup, Logs: logs, Reload: reg.Reload,
			Resolve: func(n string) (string, bool) {
				if vm, ok := reg.Lookup(n); ok {
					return vm.ID(), true
				}
				return "", false
			}})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(svc.Handler())
		client := adminv1connect.NewAdminServiceClient(vmretest.HTTP1Client(t), "http://"+vmretest.Serve(t, mux))
		ctx := t.Context()

		// The registry: a VM, or a problem that names the file escaped.
		reload, err := client.Reload(ctx, connect.NewRequest(&adminv1.ReloadRequest{}))
		if err != nil {
			t.Fatalf("Reload: %v", err)
		}
		for _, p := range reload.Msg.GetFailed() {
			printable(t, "reload failure", p.GetEntry(), p.GetVm(), p.GetKind(), p.GetError())
		}
		vms := reg.VMs()
		switch {
		case strings.HasPrefix(name, "."): // a dotfile: skipped
			return
		case !safetext.Printable(name):
			if len(vms) != 0 || len(reload.Msg.GetFailed()) != 1 || reload.Msg.GetFailed()[0].GetEntry() != safetext.Terminal(name) ||
				reload.Msg.GetFailed()[0].GetKind() != "bad name" {
				t.Fatalf("name %q loaded as %d VMs, with failures %v; want it refused as %s", name, len(vms), reload.Msg.GetFailed(), safetext.Terminal(name))
			}
			return
		case len(vms) != 1:
			t.Fatalf("name %q: %d VMs, failures %v; want one VM", name, len(vms), reload.Msg.GetFailed())
		}

		// The supervisor launches it; its output goes to the backlog.
		vm := vms[0]
		if err := sup.Add(supervise.Spec{Name: vm.ID(), Hooks: m.LauncherHooks(), Command: func() (*exec.Cmd, error) {
			cmd := vm.Command()
			cmd.Env = append(vmretest.Env(), vmretest.ModeKey+"=print", binaryKey+"="+bin, outputKey+"="+hex.EncodeToString(output))
			return cmd, nil
		}}); err != nil {
			t.Fatal(err)
		}
		for s := range states {
			if s.State == supervise.StateRunning {
				break
			}
			if s.State != supervise.StateStarting {
				t.Fatalf("VM %q is %v: %v", vm.ID(), s.State, s.Err)
			}
		}

		// Admin: every record up to the marks of both streams, then the VMs.
		tail, err := client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: vm.ID(), Follow: true}))
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
		list, err := client.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
		if err != nil {
			t.Fatalf("ListVMs: %v", err)
		}
		if len(list.Msg.GetVms()) != 1 || list.Msg.GetVms()[0].GetName() != vm.ID() {
			t.Fatalf("ListVMs: %v; want VM %q", list.Msg.GetVms(), vm.ID())
		}
		for _, v := range list.Msg.GetVms() {
			printable(t, "VM", v.GetName(), v.GetAddr(), v.GetError(), v.GetState().String())
		}

		// Metrics: a valid scrape, whose text is valid UTF-8.
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusOK || !utf8.Valid(body) || !strings.Contains(string(body), fmt.Sprintf("vmre_vm_restarts_total{vm=%q}", vm.ID())) {
			t.Fatalf("scrape: %d, valid UTF-8 %v, VM listed %v:\n%s", rec.Code, utf8.Valid(body),
				strings.Contains(string(body), "vmre_vm_restarts_total"), body)
		}
	})
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
