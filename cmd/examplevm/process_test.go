package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre"
	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
)

// These tests run the test binary itself as the plugin (TestMain
// dispatches through vmretest) against a fake engine: nothing is built. Their
// subject is the plugin's behaviour and its log records, which are how
// examplevm reports to its host (and, with --no-handshake, the only place
// it gives its address).

const testToken = "test-token"

// fakeEngine answers Initialize (refusing with reject, if set) and holds
// each lease until the VM leaves. It records every Initialize in calls.
type fakeEngine struct {
	runtimev1connect.UnimplementedRuntimeServiceHandler
	reject error
	hold   bool          // Initialize answers only when the VM gives up the call
	gate   chan struct{} // when set, Initialize answers once it is closed
	calls  chan *runtimev1.InitializeRequest
}

// startEngine serves e on 127.0.0.1 and returns its host:port.
func startEngine(t *testing.T, e *fakeEngine) string {
	e.calls = make(chan *runtimev1.InitializeRequest, 8)
	mux := http.NewServeMux()
	mux.Handle(runtimev1connect.NewRuntimeServiceHandler(e))
	return strings.TrimPrefix(serveH2C(t, mux), "http://")
}

func (e *fakeEngine) Initialize(ctx context.Context, req *connect.Request[runtimev1.InitializeRequest]) (*connect.Response[runtimev1.InitializeResponse], error) {
	if req.Header().Get("Authorization") != "Bearer "+testToken {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("bad token"))
	}
	e.calls <- req.Msg
	if e.gate != nil {
		<-e.gate
	}
	if e.hold {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if e.reject != nil {
		return nil, e.reject
	}
	return connect.NewResponse(&runtimev1.InitializeResponse{HostName: "fake",
		ProtocolVersion: req.Msg.GetProtocolVersion()}), nil
}

// nextCall returns the next Initialize the engine got.
func (e *fakeEngine) nextCall(t *testing.T) *runtimev1.InitializeRequest {
	t.Helper()
	select {
	case call := <-e.calls:
		return call
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("no Initialize within %s", vmretest.WaitTimeout)
		return nil
	}
}

func (e *fakeEngine) Lease(ctx context.Context, _ *connect.Request[runtimev1.LeaseRequest], stream *connect.ServerStream[runtimev1.LeaseResponse]) error {
	if err := stream.Send(&runtimev1.LeaseResponse{}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// plugin is the test binary running as examplevm.
type plugin struct {
	cmd     *exec.Cmd
	lines   chan string // stderr, line by line; closed at EOF
	records []map[string]any
}

func startPlugin(t *testing.T, engineAddr string, args ...string) *plugin {
	t.Helper()
	cmd := vmretest.Command("examplevm", args...)
	cmd.Env = append(cmd.Env, vmre.EngineAddressKey+"="+engineAddr, vmre.EngineTokenKey+"="+testToken)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &plugin{cmd: cmd, lines: make(chan string)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // the test failed before wait
			cmd.Process.Kill()
			for range p.lines {
			}
			cmd.Wait()
		}
	})
	return p
}

// waitFor reads records until one has the message msg, and returns it.
func (p *plugin) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.After(vmretest.WaitTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the plugin's stderr ended before %q; records: %v", msg, p.records)
			}
			rec := p.record(t, line)
			if rec["msg"] == msg {
				return rec
			}
		case <-deadline:
			t.Fatalf("no %q record within %v; records: %v", msg, vmretest.WaitTimeout, p.records)
		}
	}
}

// wait reads the rest of stderr and returns the exit code.
func (p *plugin) wait(t *testing.T) int {
	t.Helper()
	deadline := time.After(vmretest.WaitTimeout)
	for done := false; !done; {
		select {
		case line, ok := <-p.lines:
			if !ok {
				done = true
				break
			}
			p.record(t, line)
		case <-deadline:
			t.Fatalf("the plugin did not exit within %v; records: %v", vmretest.WaitTimeout, p.records)
		}
	}
	err := p.cmd.Wait()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("the plugin was killed by %v; records: %v", ws.Signal(), p.records)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *plugin) record(t *testing.T, line string) map[string]any {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("stderr line %q is not JSON: %v", line, err)
	}
	p.records = append(p.records, rec)
	return rec
}

// last returns the last record, or nil.
func (p *plugin) last() map[string]any {
	if len(p.records) == 0 {
		return nil
	}
	return p.records[len(p.records)-1]
}

func TestPluginLifecycle(t *testing.T) {
	t.Parallel()
	engine := &fakeEngine{}
	engineAddr := startEngine(t, engine)
	p := startPlugin(t, engineAddr, "--log-level", "debug")

	start := p.waitFor(t, "examplevm starting")
	if v, _ := start["version"].(string); v == "" || start["protocol_version"] != 1.0 || start["level"] != "INFO" {
		t.Errorf("start record = %v", start)
	}
	// The VM serves before it calls back: once the engine has its call,
	// the VM answers at the address it announced.
	call := engine.nextCall(t)
	if call.GetProtocolVersion() != uint32(vmre.ProtocolVersion) {
		t.Errorf("protocol version = %d, want %d", call.GetProtocolVersion(), vmre.ProtocolVersion)
	}

	httpClient := newHTTPClient(t, true)
	chain := examplev1connect.NewChainServiceClient(httpClient, "http://"+call.GetAddr(), connect.WithGRPC())
	res, err := chain.BuildBlock(t.Context(), connect.NewRequest(&examplev1.BuildBlockRequest{Data: []byte("x")}))
	if err != nil {
		t.Fatal(err)
	}
	if rec := p.waitFor(t, "block built"); rec["id"] != res.Msg.GetBlock().GetId() || rec["height"] != 1.0 {
		t.Errorf("block record = %v, want id %s", rec, res.Msg.GetBlock().GetId())
	}
	httpClient.CloseIdleConnections()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0; records: %v", code, p.records)
	}
	stop := p.last()
	if stop["msg"] != "examplevm stopped" || stop["level"] != "INFO" || stop["last_height"] != 1.0 {
		t.Errorf("last record = %v, want the INFO shutdown record", stop)
	}
}

// TestPluginVersionMismatch: a refused handshake is logged with its hint,
// and the VM exits 1, also when the host's SIGTERM, which follows a refusal
// at once, reaches the VM before the answer does.
func TestPluginVersionMismatch(t *testing.T) {
	t.Parallel()
	for _, signalFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("SIGTERM before the answer=%v", signalFirst), func(t *testing.T) {
			t.Parallel()
			mismatch := &vmre.VersionMismatchError{HostName: "fake", HostVersion: vmre.ProtocolVersion, VMVersion: 7}
			reject := connect.NewError(connect.CodeFailedPrecondition, mismatch)
			detail, err := connect.NewErrorDetail(&runtimev1.ProtocolVersionMismatch{
				HostName: "fake", HostProtocolVersion: uint32(vmre.ProtocolVersion), VmProtocolVersion: 7})
			if err != nil {
				t.Fatal(err)
			}
			reject.AddDetail(detail)
			engine := &fakeEngine{reject: reject}
			if signalFirst {
				engine.gate = make(chan struct{})
			}
			engineAddr := startEngine(t, engine)

			p := startPlugin(t, engineAddr, "--protocol-version", "7")
			if call := engine.nextCall(t); call.GetProtocolVersion() != 7 {
				t.Errorf("the VM announced version %d, want 7", call.GetProtocolVersion())
			}
			if signalFirst {
				if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				// The VM says it got the signal before the answer is sent.
				p.waitFor(t, "stop asked during the handshake: waiting for the host's answer first")
				close(engine.gate)
			}
			if code := p.wait(t); code != 1 {
				t.Fatalf("exit %d, want 1; records: %v", code, p.records)
			}
			stop := p.last()
			msg, _ := stop["error"].(string)
			hint, _ := stop["hint"].(string)
			if stop["msg"] != "examplevm stopped" || stop["level"] != "ERROR" ||
				!strings.Contains(msg, "handshake failed: protocol version mismatch fake: 1 vm: 7") ||
				!strings.Contains(hint, "the VM is newer than the host") {
				t.Errorf("last record = %v, want the ERROR shutdown record with the mismatch and a hint", stop)
			}
		})
	}
}

func TestPluginNoHandshake(t *testing.T) {
	t.Parallel()
	engine := &fakeEngine{}
	engineAddr := startEngine(t, engine)
	p := startPlugin(t, engineAddr, "--no-handshake")

	rec := p.waitFor(t, "not calling the host back (--no-handshake): the host will time out waiting for the handshake")
	addr, _ := rec["addr"].(string)
	if rec["level"] != "WARN" || addr == "" {
		t.Fatalf("record = %v", rec)
	}
	// The VM serves, it just never calls back.
	httpClient := newHTTPClient(t, true)
	res, err := grpchealth.NewClient(httpClient, "http://"+addr).Check(t.Context(),
		&grpchealth.CheckRequest{Service: examplev1connect.ChainServiceName})
	if err != nil || res.Status != grpchealth.StatusServing {
		t.Fatalf("health = %v, %v; want serving", res, err)
	}
	httpClient.CloseIdleConnections()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0; records: %v", code, p.records)
	}
	if n := len(engine.calls); n != 0 {
		t.Errorf("the engine got %d Initialize calls, want none", n)
	}
	if stop := p.last(); stop["msg"] != "examplevm stopped" || stop["level"] != "INFO" {
		t.Errorf("last record = %v, want the INFO shutdown record", stop)
	}
}

// TestPluginBadVersions: the VM's two ways to be a bad version for a
// rollout: --unhealthy handshakes and serves, but its health service says
// NOT_SERVING; --exit-after handshakes, then exits 1 that long after.
func TestPluginBadVersions(t *testing.T) {
	t.Parallel()
	t.Run("unhealthy", func(t *testing.T) {
		t.Parallel()
		engine := &fakeEngine{}
		p := startPlugin(t, startEngine(t, engine), "--unhealthy")
		addr := engine.nextCall(t).GetAddr()
		p.waitFor(t, "handshake accepted")
		httpClient := newHTTPClient(t, true)
		defer httpClient.CloseIdleConnections()
		for _, service := range []string{"", examplev1connect.ChainServiceName} {
			res, err := grpchealth.NewClient(httpClient, "http://"+addr).Check(t.Context(), &grpchealth.CheckRequest{Service: service})
			if err != nil || res.Status != grpchealth.StatusNotServing {
				t.Errorf("health of %q = %v, %v; want not serving", service, res, err)
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
	})
	t.Run("exit after", func(t *testing.T) {
		t.Parallel()
		engine := &fakeEngine{}
		p := startPlugin(t, startEngine(t, engine), "--exit-after", "100ms")
		engine.nextCall(t)
		rec := p.waitFor(t, "examplevm crashed")
		if rec["level"] != "ERROR" || rec["exit_after"] == nil {
			t.Errorf("the crash's record: %v", rec)
		}
		if code := p.wait(t); code != 1 {
			t.Errorf("exit %d, want 1; records: %v", code, p.records)
		}
	})
}

// TestPluginSignalDuringHandshake stops the VM while its Initialize call is
// in flight, as a host does that gives up right then: the VM exits 0.
func TestPluginSignalDuringHandshake(t *testing.T) {
	t.Parallel()
	engine := &fakeEngine{hold: true}
	p := startPlugin(t, startEngine(t, engine))
	engine.nextCall(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0; records: %v", code, p.records)
	}
	stop := p.last()
	if stop["msg"] != "examplevm stopped" || stop["level"] != "INFO" ||
		stop["reason"] != "terminated signal received during the handshake" {
		t.Errorf("last record = %v, want the INFO shutdown record with the reason", stop)
	}
}
