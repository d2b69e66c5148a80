package node_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-chi/chi/v5"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// exampleVM is the example VM plugin, built once by TestMain; badVM is a
// copy of it with bytes appended, which runs the same but is other bytes:
// the bad versions of the rollout tests run it with their flags.
var (
	buildDir  string
	exampleVM string
	badVM     string
)

func TestMain(m *testing.M) {
	sandbox.Init() // a sandboxed launch's init step re-executes this binary
	if os.Getenv(vmretest.ModeKey) == "" {
		dir, err := os.MkdirTemp("", "vmre-node-test-")
		if err == nil {
			buildDir, exampleVM = dir, filepath.Join(dir, "examplevm")
			out, berr := exec.Command("go", "build", "-o", exampleVM, "github.com/vmre/vmre/cmd/examplevm").CombinedOutput()
			if berr != nil {
				err = fmt.Errorf("go build examplevm: %w\n%s", berr, out)
			} else {
				badVM = filepath.Join(dir, "badvm")
				err = appendCopy(exampleVM, badVM, []byte("a bad version"))
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	vmretest.Main(m, helpers, vmretest.RemoveDir(&buildDir))
}

// helpers are the test binary's lives as a helper process.
var helpers = map[string]vmretest.Helper{}

// states records every change of the VMs' states that the node's hook
// tells, and lets a test wait for one.
type states struct {
	mu      sync.Mutex
	list    []supervise.VM
	removed []string // the VMs Hooks.Removed told of, in order
	change  chan struct{}
}

func newStates() *states { return &states{change: make(chan struct{})} }

func (s *states) add(vm supervise.VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, vm)
	close(s.change)
	s.change = make(chan struct{})
}

func (s *states) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, name)
	close(s.change)
	s.change = make(chan struct{})
}

// removals returns the VMs Hooks.Removed told of.
func (s *states) removals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.removed...)
}

// wait returns the first change of the VM name to state (0: any) for
// which cond (when not nil) holds.
func (s *states) wait(t *testing.T, name string, state supervise.State, cond func(supervise.VM) bool) supervise.VM {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for seen := 0; ; {
		s.mu.Lock()
		list, change := s.list, s.change
		s.mu.Unlock()
		for ; seen < len(list); seen++ {
			if vm := list[seen]; vm.Name == name && (state == 0 || vm.State == state) && (cond == nil || cond(vm)) {
				return vm
			}
		}
		select {
		case <-change:
		case <-timeout.C:
			var seenStates []string
			for _, vm := range list {
				seenStates = append(seenStates, vm.Name+":"+vm.State.String())
			}
			t.Fatalf("%s never %s within %s; changes: %v", name, state, vmretest.WaitTimeout, seenStates)
			return supervise.VM{}
		}
	}
}

// rollouts records what the node's rollout hooks tell, and lets a test
// wait for it.
type rollouts struct {
	states *states // where the state that shows a rollout's end comes
	mu     sync.Mutex
	list   []rolloutEvent
	change chan struct{}
}

// rolloutEvent is one call of a rollout hook: kind is started, healthy,
// reverted or failed.
type rolloutEvent struct {
	kind string
	supervise.RolloutEvent
}

func (r *rollouts) hooks(h *node.Hooks) {
	r.change = make(chan struct{})
	add := func(kind string) func(supervise.RolloutEvent) {
		return func(ev supervise.RolloutEvent) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.list = append(r.list, rolloutEvent{kind, ev})
			close(r.change)
			r.change = make(chan struct{})
		}
	}
	h.RolloutStarted, h.RolloutHealthy, h.RolloutReverted, h.RolloutFailed = add("started"), add("healthy"), add("reverted"), add("failed")
}

// wait returns the first event of the VM name after the first from ones
// that is of kind, and its index. An end's hook comes just before the
// state that shows it: wait returns once the state does.
func (r *rollouts) wait(t *testing.T, name, kind string, from int) (supervise.RolloutStatus, int) {
	t.Helper()
	timeout := time.NewTimer(vmretest.WaitTimeout)
	defer timeout.Stop()
	for seen := from; ; {
		r.mu.Lock()
		list, change := r.list, r.change
		r.mu.Unlock()
		for ; seen < len(list); seen++ {
			if ev := list[seen]; ev.VM == name && ev.kind == kind {
				if kind != "started" {
					r.states.wait(t, name, 0, func(vm supervise.VM) bool {
						return vm.Rollout != nil && vm.Rollout.ID == ev.Rollout.ID && vm.Rollout.Phase == ev.Rollout.Phase
					})
				}
				return ev.Rollout, seen + 1
			}
		}
		select {
		case <-change:
		case <-timeout.C:
			var kinds []string
			for _, ev := range list {
				kinds = append(kinds, ev.VM+":"+ev.kind)
			}
			t.Fatalf("no rollout %s of %s within %s; events: %v", kind, name, vmretest.WaitTimeout, kinds)
			return supervise.RolloutStatus{}, 0
		}
	}
}

// count returns the number of events so far.
func (r *rollouts) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.list)
}

// testNode is a node on a temporary plugin directory, mounted with a
// route of its own on an httptest server, running until the test ends.
type testNode struct {
	n        *node.Node
	url      string
	admin    adminv1connect.AdminServiceClient
	states   *states
	rollouts *rollouts
	// serving is closed once Run has supervised the VMs of its first load
	// (Hooks.Serving): the remote ones are enrolled.
	serving chan struct{}
	cancel  context.CancelFunc
	done    chan error
	srv     *httptest.Server
}

// Rollouts of the tests: a new version is healthy once it has answered
// for testMinHealthy, probed every 20 ms.
const (
	testMinHealthy    = 200 * time.Millisecond
	testProbeInterval = 20 * time.Millisecond
)

// startNode runs a node of cfg (Addr, Hooks and KeepProcess set here,
// Logger unless cfg has one, and the rollouts' timings when unset) until
// stop or the end of the test.
func startNode(t *testing.T, cfg node.Config) *testNode {
	t.Helper()
	r := chi.NewRouter()
	r.Get("/mine", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("the node's own route\n")) })
	srv := httptest.NewUnstartedServer(r)
	cfg.Addr = srv.Listener.Addr().String()
	if cfg.Logger == nil {
		cfg.Logger = vmretest.Logger(t)
	}
	// The test binary runs other tests' processes: it does not become
	// their subreaper (the survivors' test counts on where an orphan goes),
	// nor mark its descriptors; helper processes run nodes that do.
	cfg.KeepProcess = true
	st := newStates()
	ro := &rollouts{states: st}
	serving := make(chan struct{})
	cfg.Hooks = &node.Hooks{State: st.add, Removed: st.remove, Serving: func() { close(serving) }}
	ro.hooks(cfg.Hooks)
	if cfg.Backoff == (supervise.Backoff{}) {
		cfg.Backoff = supervise.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if cfg.Rollout.MinHealthy == 0 {
		cfg.Rollout.MinHealthy = testMinHealthy
	}
	if cfg.Rollout.ProbeInterval == 0 {
		cfg.Rollout.ProbeInterval = testProbeInterval
	}
	n, err := node.New(cfg)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	r.Mount("/", n.Handler())
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{n: n, url: srv.URL, states: st, rollouts: ro, serving: serving, cancel: cancel, done: make(chan error, 1), srv: srv}
	tn.admin = adminv1connect.NewAdminServiceClient(vmretest.HTTP1Client(t), srv.URL)
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(tn.stop)
	return tn
}

// stop stops the node and waits for Run; it may be called again.
func (tn *testNode) stop() {
	if tn.done == nil {
		return
	}
	tn.cancel()
	err := <-tn.done
	tn.done = nil
	tn.srv.Close()
	if err != nil {
		panic(fmt.Sprintf("Run: %v", err))
	}
}

// vms lists the node's VMs through the admin API, by name.
func (tn *testNode) vms(t *testing.T) map[string]*adminv1.VM {
	t.Helper()
	res, err := tn.admin.ListVMs(t.Context(), connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*adminv1.VM{}
	for _, vm := range res.Msg.GetVms() {
		out[vm.GetName()] = vm
	}
	return out
}

// pluginDir makes a plugin directory holding the example VM under names.
func pluginDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		copyFile(t, exampleVM, filepath.Join(dir, name), nil)
	}
	return dir
}

// copyFile copies src to dst, executable, with extra bytes appended (an
// ELF binary runs the same with bytes after its end: a new version).
func copyFile(t *testing.T, src, dst string, extra []byte) {
	t.Helper()
	if err := appendCopy(src, dst, extra); err != nil {
		t.Fatal(err)
	}
}

// appendCopy copies src to dst, executable, with extra appended, by a
// rename over dst.
func appendCopy(src, dst string, extra []byte) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := vmretest.WriteExecutable(tmp, append(b, extra...), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// syscallKill kills pid.
func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
