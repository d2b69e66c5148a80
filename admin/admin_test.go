package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/supervise"
)

// node is an admin service over a real supervisor and launcher, served on
// loopback, with a connect-go client.
type node struct {
	sup    *supervise.Supervisor
	launch *launcher.Launcher
	svc    *admin.Service
	logs   *admin.Logs
	client adminv1connect.AdminServiceClient
	url    string
	calls  *calls
}

// calls records what the service tells OnCall.
type calls struct {
	mu   sync.Mutex
	list []string // procedure + " " + result
}

func (c *calls) add(procedure string, err error) {
	result := "ok"
	if err != nil {
		result = connect.CodeOf(err).String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, procedure+" "+result)
}

func (c *calls) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.list {
		if x == s {
			return true
		}
	}
	return false
}

type nodeConfig struct {
	quiet   bool // log nothing to the test's log (a flood would slow it down)
	token   string
	backoff supervise.Backoff
	reload  func(context.Context) (*adminv1.ReloadResponse, error)
	backlog int
}

func newNode(t *testing.T, cfg nodeConfig) *node {
	t.Helper()
	n := &node{logs: admin.NewLogs(cfg.backlog), calls: &calls{}}
	var next slog.Handler = vmretest.Logger(t).Handler()
	if cfg.quiet {
		next = vmretest.EnabledDiscard{}
	}
	log := slog.New(n.logs.Handler(next))
	var err error
	n.launch, err = launcher.New(launcher.Config{Logger: log, GracefulTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.launch.Close() })
	var svc *admin.Service
	n.sup, err = supervise.New(supervise.Config{Launcher: supervise.FromLauncher(n.launch), Backoff: cfg.backoff,
		Hooks: &supervise.Hooks{State: func(vm supervise.VM) { svc.StateChanged(vm) }, Removed: func(name string) { svc.Removed(name) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.sup.Close(context.Background()) })
	svc, err = admin.New(admin.Config{Supervisor: n.sup, Reload: cfg.reload, Logs: n.logs, Token: cfg.token,
		Logger: log, OnCall: n.calls.add})
	if err != nil {
		t.Fatal(err)
	}
	n.svc = svc
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	n.url = "http://" + vmretest.Serve(t, mux)
	n.client = adminv1connect.NewAdminServiceClient(vmretest.HTTP1Client(t), n.url)
	return n
}

func (n *node) add(t *testing.T, name, mode string, policy supervise.Policy) {
	t.Helper()
	command := func() (*exec.Cmd, error) { return vmretest.Command(mode), nil }
	if err := n.sup.Add(supervise.Spec{Name: name, Command: command, Policy: policy}); err != nil {
		t.Fatal(err)
	}
}

// running waits until the VM name runs with a pid other than not.
func (n *node) running(t *testing.T, name string, not int32) *adminv1.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	stream, err := n.client.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() {
		if vm := stream.Msg().GetVm(); vm.GetName() == name && vm.GetState() == adminv1.VMState_VM_STATE_RUNNING && vm.GetPid() != not {
			return vm
		}
	}
	t.Fatalf("%s never ran (pid other than %d): %v", name, not, stream.Err())
	return nil
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("error %v; want %v", err, code)
	}
}

func TestUnaryRPCs(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	n.add(t, "alpha", "serve", supervise.OnFailure)
	first := n.running(t, "alpha", 0)
	ctx := t.Context()

	list, err := n.client.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil || len(list.Msg.GetVms()) != 1 || list.Msg.GetVms()[0].GetPid() != first.GetPid() {
		t.Fatalf("ListVMs: %v, %v", list, err)
	}
	got, err := n.client.GetVM(ctx, connect.NewRequest(&adminv1.GetVMRequest{Name: "alpha"}))
	if err != nil || got.Msg.GetVm().GetAddr() == "" || got.Msg.GetVm().GetLaunches() != 1 {
		t.Fatalf("GetVM: %v, %v", got, err)
	}
	_, err = n.client.GetVM(ctx, connect.NewRequest(&adminv1.GetVMRequest{Name: "nope"}))
	wantCode(t, err, connect.CodeNotFound)

	stop, err := n.client.StopVM(ctx, connect.NewRequest(&adminv1.StopVMRequest{Name: "alpha"}))
	if err != nil || !stop.Msg.GetChanged() || stop.Msg.GetVm().GetState() != adminv1.VMState_VM_STATE_STOPPED ||
		stop.Msg.GetVm().GetLastExit().GetStage() != "sigterm" {
		t.Fatalf("StopVM: %v, %v", stop, err)
	}
	if !vmretest.ProcessGone(int(first.GetPid())) {
		t.Errorf("pid %d runs after StopVM", first.GetPid())
	}
	again, err := n.client.StopVM(ctx, connect.NewRequest(&adminv1.StopVMRequest{Name: "alpha"}))
	if err != nil || again.Msg.GetChanged() || again.Msg.GetMessage() != "alpha was not running (stopped): nothing to stop" {
		t.Fatalf("StopVM of a stopped VM: %v, %v; want a no-op that says so", again, err)
	}
	start, err := n.client.StartVM(ctx, connect.NewRequest(&adminv1.StartVMRequest{Name: "alpha"}))
	if err != nil || !start.Msg.GetChanged() || start.Msg.GetVm().GetState() != adminv1.VMState_VM_STATE_RUNNING {
		t.Fatalf("StartVM: %v, %v", start, err)
	}
	restart, err := n.client.RestartVM(ctx, connect.NewRequest(&adminv1.RestartVMRequest{Name: "alpha"}))
	if err != nil || restart.Msg.GetVm().GetPid() == start.Msg.GetVm().GetPid() || restart.Msg.GetVm().GetLaunches() != 3 {
		t.Fatalf("RestartVM: %v, %v; want a new pid, the third launch", restart, err)
	}
	_, err = n.client.Reload(ctx, connect.NewRequest(&adminv1.ReloadRequest{}))
	wantCode(t, err, connect.CodeUnimplemented)
	if !n.calls.has("/vmre.admin.v1.AdminService/GetVM not_found") || !n.calls.has("/vmre.admin.v1.AdminService/StopVM ok") {
		t.Errorf("OnCall missed calls: %v", n.calls.list)
	}
}

// TestStopTimeout: a stop's timeout cuts the VM's graceful timeout short:
// a VM that ignores SIGTERM is killed after it, not after the launcher's
// 5 s.
func TestStopTimeout(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	n.add(t, "stubborn", "stubborn", supervise.Never)
	n.running(t, "stubborn", 0)
	logs, err := n.client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: "stubborn", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	for logs.Receive() && logs.Msg().GetRecord().GetMessage() != "ignoring SIGTERM" {
	}
	logs.Close()
	stop, err := n.client.StopVM(t.Context(), connect.NewRequest(&adminv1.StopVMRequest{Name: "stubborn", Timeout: durationpb.New(100 * time.Millisecond)}))
	if err != nil {
		t.Fatal(err)
	}
	exit := stop.Msg.GetVm().GetLastExit()
	if exit.GetStage() != "sigkill" || exit.GetRan().AsDuration() >= 5*time.Second {
		t.Errorf("exit %v; want killed at the stop's timeout, before the graceful timeout", exit)
	}
}

// TestCloseEndsStreams: Close ends a follower of logs and a watcher
// without an error (the node stops), and a stream begun after it ends
// once sent what it holds.
func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	n.add(t, "alpha", "serve", supervise.Never)
	n.running(t, "alpha", 0)
	follow, err := n.client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: "alpha", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	watch, err := n.client.WatchVMs(t.Context(), connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !follow.Receive() || !watch.Receive() { // both streams are open
		t.Fatalf("no first message: %v, %v", follow.Err(), watch.Err())
	}
	n.svc.Close()
	for follow.Receive() {
	}
	for watch.Receive() {
	}
	if follow.Err() != nil || watch.Err() != nil {
		t.Errorf("streams ended with %v, %v; want no error", follow.Err(), watch.Err())
	}
	later, err := n.client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: "alpha", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for later.Receive() {
		sent++
	}
	if later.Err() != nil || sent == 0 {
		t.Errorf("a follow after Close: %d records, %v; want the backlog, then the end", sent, later.Err())
	}
}

func TestRestartDuringBackoffRestartsNow(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{backoff: supervise.Backoff{Initial: time.Hour}})
	n.add(t, "alpha", "serve", supervise.Always)
	first := n.running(t, "alpha", 0)
	syscall.Kill(int(first.GetPid()), syscall.SIGKILL)
	ctx := t.Context()
	// Wait for the hour-long backoff.
	stream, err := n.client.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() && stream.Msg().GetVm().GetState() != adminv1.VMState_VM_STATE_BACKOFF {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	res, err := n.client.RestartVM(ctx, connect.NewRequest(&adminv1.RestartVMRequest{Name: "alpha"}))
	if err != nil || res.Msg.GetVm().GetState() != adminv1.VMState_VM_STATE_RUNNING {
		t.Fatalf("RestartVM during the backoff: %v, %v; want it running now", res, err)
	}
}

// TestWatchVMsSeesKillAndRestart: the current state first, then a kill
// and the restart, in order.
func TestWatchVMsSeesKillAndRestart(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{backoff: supervise.Backoff{Initial: 50 * time.Millisecond}})
	n.add(t, "alpha", "serve", supervise.OnFailure)
	first := n.running(t, "alpha", 0)
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	stream, err := n.client.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || stream.Msg().GetVm().GetPid() != first.GetPid() {
		t.Fatalf("first message %v, %v; want the current state", stream.Msg(), stream.Err())
	}
	if err := syscall.Kill(int(first.GetPid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var seen []adminv1.VMState
	for stream.Receive() {
		vm := stream.Msg().GetVm()
		seen = append(seen, vm.GetState())
		if vm.GetState() == adminv1.VMState_VM_STATE_RUNNING {
			if vm.GetPid() == first.GetPid() || vm.GetRestarts() != 1 || vm.GetLastExit().GetSignal() != "killed" {
				t.Errorf("after the restart: %v", vm)
			}
			break
		}
	}
	want := []adminv1.VMState{adminv1.VMState_VM_STATE_BACKOFF, adminv1.VMState_VM_STATE_STARTING, adminv1.VMState_VM_STATE_RUNNING}
	if len(seen) != len(want) {
		t.Fatalf("states %v; want %v (%v)", seen, want, stream.Err())
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("states %v; want %v", seen, want)
		}
	}
}

// TestTailLogsBacklogThenFollow: the backlog first, then the new records.
func TestTailLogsBacklogThenFollow(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	n.add(t, "chatty", "chatty", supervise.Never)
	n.running(t, "chatty", 0)
	ctx := t.Context()
	// Let the backlog hold some ticks: follow until tick 5, then read the
	// backlog without following.
	follow, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "chatty", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	lastTick := func(r *adminv1.LogRecord) string {
		for _, a := range r.GetAttrs() {
			if a.GetKey() == "n" && r.GetMessage() == "tick" {
				return a.GetValue()
			}
		}
		return ""
	}
	for follow.Receive() && lastTick(follow.Msg().GetRecord()) != "5" {
	}
	backlog, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "chatty"}))
	if err != nil {
		t.Fatal(err)
	}
	var ticks []string
	for backlog.Receive() {
		r := backlog.Msg().GetRecord()
		if r.GetStream() == admin.NodeStream {
			continue // the node's records about chatty: launching, running
		}
		if r.GetStream() != "stderr" || r.GetPid() == 0 {
			t.Fatalf("record %v; want the VM's stderr and pid", r)
		}
		if n := lastTick(r); n != "" {
			ticks = append(ticks, n)
		}
	}
	if backlog.Err() != nil || len(ticks) < 6 || ticks[0] != "0" {
		t.Fatalf("backlog ticks %v (%v); want 0 to 5 at least", ticks, backlog.Err())
	}
	// The follower goes on with the records after the backlog's.
	last, _ := strconv.Atoi(ticks[len(ticks)-1])
	for follow.Receive() {
		if n, err := strconv.Atoi(lastTick(follow.Msg().GetRecord())); err == nil && n > last {
			break
		}
	}
	if follow.Err() != nil {
		t.Fatal(follow.Err())
	}
	follow.Close()
	_, err = n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "nope"}))
	if err == nil {
		s, _ := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "nope"}))
		for s.Receive() {
		}
		err = s.Err()
	}
	wantCode(t, err, connect.CodeNotFound)
}

// TestSlowFollowerDoesNotHoldTheVM: a follower that reads nothing neither
// stops the VM's log pipe nor makes the backlog grow past its limit.
// TestLogsNeverBlock (logs_internal_test.go) counts what it misses.
func TestSlowFollowerDoesNotHoldTheVM(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	n := newNode(t, nodeConfig{backlog: limit, quiet: true})
	n.add(t, "flood", "flood", supervise.Never)
	n.running(t, "flood", 0)
	stream, err := n.client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: "flood", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() { // the follower is registered; now it stops reading
		t.Fatal(stream.Err())
	}
	// The VM goes on logging while the slow follower reads nothing: a
	// second follower that reads sees far more records pass than the slow
	// one's buffer and its stream could hold.
	fast, err := n.client.TailLogs(t.Context(), connect.NewRequest(&adminv1.TailLogsRequest{Name: "flood", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	for seen := 0; seen < 1500; seen++ { // far more than the slow one's buffer of 256
		if !fast.Receive() {
			t.Fatalf("the fast follower ended after %d records: %v", seen, fast.Err())
		}
	}
	if b := n.logs.Bytes()["flood"]; b > limit {
		t.Errorf("backlog of %d bytes; the limit is %d", b, limit)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin-token-for-tests"
	n := newNode(t, nodeConfig{token: token})
	call := func(header string) error {
		req := connect.NewRequest(&adminv1.ListVMsRequest{})
		if header != "" {
			req.Header().Set("Authorization", header)
		}
		_, err := n.client.ListVMs(t.Context(), req)
		return err
	}
	wantCode(t, call(""), connect.CodeUnauthenticated)
	wantCode(t, call("Bearer wrong"), connect.CodeUnauthenticated)
	wantCode(t, call("Basic "+token), connect.CodeUnauthenticated)
	if err := call("Bearer " + token); err != nil {
		t.Fatalf("the right token: %v", err)
	}
	// Streams are guarded too.
	s, err := n.client.WatchVMs(t.Context(), connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err == nil {
		s.Receive()
		err = s.Err()
		s.Close()
	}
	wantCode(t, err, connect.CodeUnauthenticated)
	if !n.calls.has("/vmre.admin.v1.AdminService/ListVMs unauthenticated") || !n.calls.has("/vmre.admin.v1.AdminService/WatchVMs unauthenticated") {
		t.Errorf("refusals not told to OnCall: %v", n.calls.list)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	reloaded := false
	n := newNode(t, nodeConfig{reload: func(context.Context) (*adminv1.ReloadResponse, error) {
		reloaded = true
		return nil, errors.New("the directory cannot be listed")
	}})
	_, err := n.client.Reload(t.Context(), connect.NewRequest(&adminv1.ReloadRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if !reloaded {
		t.Error("Reload did not reload")
	}
}

// TestBytesNotUTF8: a VM's line that is not valid UTF-8 reaches TailLogs
// escaped (x\xff), as the node's log writes it, and so do the records
// after it, in the backlog and for a follower, whose stream goes on; a
// terminal escape stays as it is, for the client to escape on a terminal.
// A VM whose name is not UTF-8 is listed under its escaped name.
func TestBytesNotUTF8(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{quiet: true})
	n.add(t, "bytes", "badbytes", supervise.Never)
	n.add(t, "bad\xffname", "serve", supervise.Never)
	n.running(t, "bytes", 0)
	n.running(t, `bad\xffname`, 0)
	ctx := t.Context()

	list, err := n.client.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vm := range list.Msg.GetVms() {
		names = append(names, vm.GetName())
	}
	if !slices.Contains(names, `bad\xffname`) {
		t.Errorf("ListVMs names %q; want bad\\xffname among them", names)
	}

	// read takes records until it has seen "x\xff", the escape line and
	// two "after N" lines after them.
	read := func(what string, stream *connect.ServerStreamForClient[adminv1.TailLogsResponse]) {
		t.Helper()
		var sawBad, sawEsc bool
		after := 0
		for after < 2 && stream.Receive() {
			switch msg := stream.Msg().GetRecord().GetMessage(); {
			case msg == `x\xff`:
				sawBad = true
			case msg == "\x1b]0;PWNED\x07\x1b[2J":
				sawEsc = true
			case strings.HasPrefix(msg, "after ") && sawBad && sawEsc:
				after++
			}
		}
		if after < 2 {
			t.Fatalf("%s: ended before two records after the bad ones (x\\xff %v, escapes %v): %v", what, sawBad, sawEsc, stream.Err())
		}
	}
	follow, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "bytes", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	read("follower", follow)
	backlog, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "bytes"}))
	if err != nil {
		t.Fatal(err)
	}
	read("backlog", backlog)
	read("follower, later", follow) // still following
}

// TestFollowerSeesTheEnd: a follower that stops reading while the VM
// writes a burst far larger than the backlog, then reads again while the
// VM is silent, gets at once the count of the records it missed and the
// newest records, the burst's last line included: it does not wait for a
// line the VM may never write.
func TestFollowerSeesTheEnd(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{backlog: 16 << 10, quiet: true})
	n.add(t, "burst", "burst", supervise.Never)
	vm := n.running(t, "burst", 0)
	// Bounded: a follower that waits for a line the VM never writes fails.
	ctx, cancel := context.WithTimeout(t.Context(), vmretest.WaitTimeout)
	defer cancel()
	slow, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "burst", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := n.client.TailLogs(ctx, connect.NewRequest(&adminv1.TailLogsRequest{Name: "burst", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	if err := syscall.Kill(int(vm.GetPid()), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// The fast follower reads the whole burst: then it is all logged, and
	// the slow one, which read nothing, is far behind.
	var fastDropped int64
	for fast.Receive() && fast.Msg().GetRecord().GetMessage() != "burst end" {
		fastDropped += fast.Msg().GetDroppedBefore()
	}
	if fast.Err() != nil {
		t.Fatal(fast.Err())
	}
	// The slow one: a note of what it missed, then the newest lines without
	// a gap, to the last, with no line from the VM after it.
	var dropped int64
	next := -1 // the burst line due next, once the gap is behind
	for slow.Receive() {
		msg := slow.Msg()
		dropped += msg.GetDroppedBefore()
		text := msg.GetRecord().GetMessage()
		if text == "burst end" {
			break
		}
		var i int
		if _, err := fmt.Sscanf(text, "burst %d", &i); err != nil {
			continue // a line of the VM's before the burst
		}
		if msg.GetDroppedBefore() > 0 {
			next = i
		}
		if next >= 0 && i != next {
			t.Fatalf("after the gap, burst line %d came where %d was due", i, next)
		}
		if next >= 0 {
			next++
		}
	}
	if slow.Err() != nil {
		t.Fatal(slow.Err())
	}
	t.Logf("the slow follower was told of %d missed; the fast one of %d", dropped, fastDropped)
	if dropped == 0 || next != burstLines {
		t.Errorf("the slow follower was told of %d missed and went on to line %d; want some missed, then every line to the last (%d)", dropped, next-1, burstLines-1)
	}
}

// TestTokenBeforeBody: with a token, a call without it is refused before
// its body is read: a request that declares a 200 MB body, which never
// comes, gets its 401 at once.
func TestTokenBeforeBody(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{token: "s3cret-admin-token-for-tests"})
	body, w := io.Pipe()
	defer w.Close() // the body never comes: a handler that read it would wait
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, n.url+"/vmre.admin.v1.AdminService/ListVMs", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = 200 << 20
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := vmretest.HTTP1Client(t).Do(req)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp != nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %s; want 401 Unauthorized", resp.Status)
			}
		}
	case <-time.After(vmretest.WaitTimeout):
		t.Fatal("no answer while the body did not come: the token is checked after the body is read")
	}
}
