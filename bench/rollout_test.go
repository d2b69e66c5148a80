package bench

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// BenchmarkRollout is the downtime of a rollout of the example VM, as a
// client sees it that calls the VM's grpc.health.v1 Check again and again
// at the address the node shows for it (re-read at each change of the
// VM's state): the time from the old version's last answer to the new
// version's first. Each iteration rolls out the other of two versions
// (the example VM, and the same with bytes appended) with a min-healthy
// time of 50 ms; it reports the median downtime (downtime-ms), and the
// median time from the reload to the rollout's end (rollout-ms). replace
// stops the old run, then starts the new: its downtime is a stop and a
// start of one VM; start-first starts the new one beside the old and
// switches once it is healthy: its downtime is the client's move from
// one address to the other.
func BenchmarkRollout(b *testing.B) {
	for _, s := range []supervise.Strategy{supervise.Replace, supervise.StartFirst} {
		b.Run(s.String(), func(b *testing.B) { benchRollout(b, s) })
	}
}

func benchRollout(b *testing.B, strategy supervise.Strategy) {
	example := plugins(b).example
	versions := make([][]byte, 2)
	var err error
	if versions[0], err = os.ReadFile(example); err != nil {
		b.Fatal(err)
	}
	versions[1] = append(append([]byte(nil), versions[0]...), "another version"...)
	dir := b.TempDir()
	path := filepath.Join(dir, "vm")
	if err := os.WriteFile(path, versions[0], 0o755); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c := newCaller()
	ended := make(chan supervise.RolloutStatus, 1)
	n, err := node.New(node.Config{PluginDir: dir, DataDir: b.TempDir(), Listener: ln,
		Rollout: node.RolloutConfig{Strategy: strategy, MinHealthy: 50 * time.Millisecond, ProbeInterval: 10 * time.Millisecond},
		Hooks: &node.Hooks{
			State:           c.follow,
			RolloutHealthy:  func(ev supervise.RolloutEvent) { ended <- ev.Rollout },
			RolloutReverted: func(ev supervise.RolloutEvent) { ended <- ev.Rollout },
		}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	c.waitAnswer(b)
	calling := make(chan struct{})
	go func() {
		defer close(calling)
		c.call(ctx)
	}()
	defer func() { <-calling }()
	defer cancel()

	var downtimes, rollouts []float64
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := vmretest.WriteExecutable(path+".new", versions[(i+1)%2], 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			b.Fatal(err)
		}
		start := c.reset()
		if _, err := n.Reload(ctx); err != nil {
			b.Fatal(err)
		}
		r := <-ended
		if r.Phase != supervise.RolloutSucceeded {
			b.Fatalf("rollout %d: %s: %v", i, r.Phase, r.Err)
		}
		downtimes = append(downtimes, float64(c.downtime(b))/1e6)
		rollouts = append(rollouts, float64(time.Since(start))/1e6)
	}
	b.StopTimer()
	b.ReportMetric(median.Of(downtimes), "downtime-ms")
	b.ReportMetric(median.Of(rollouts), "rollout-ms")
}

// caller calls the VM at the address its state shows, and measures the
// time from the last answer at one address to the first at another.
type caller struct {
	hc *http.Client

	mu       sync.Mutex
	addr     string    // where the calls go
	from     string    // the address before the rollout
	lastOld  time.Time // the last answer there
	firstNew time.Time // the first answer at another address, or zero
	moved    chan struct{}
}

func newCaller() *caller { return &caller{hc: h2c.NewHTTP1Client()} }

// follow is the node's State hook: a running VM's address is where the
// calls go from now.
func (c *caller) follow(vm supervise.VM) {
	if vm.State != supervise.StateRunning {
		return
	}
	c.mu.Lock()
	c.addr = vm.Addr
	c.mu.Unlock()
}

// check calls the VM at addr once.
func (c *caller) check(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := grpchealth.NewClient(c.hc, "http://"+addr).Check(ctx, &grpchealth.CheckRequest{})
	return err == nil && res.Status == grpchealth.StatusServing
}

// call calls the VM until ctx ends.
func (c *caller) call(ctx context.Context) {
	defer c.hc.CloseIdleConnections()
	for ctx.Err() == nil {
		c.mu.Lock()
		addr := c.addr
		c.mu.Unlock()
		if !c.check(ctx, addr) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		now := time.Now()
		c.mu.Lock()
		switch {
		case c.moved == nil:
		case addr == c.from:
			c.lastOld = now
		case c.firstNew.IsZero():
			c.firstNew = now
			close(c.moved)
		}
		c.mu.Unlock()
	}
}

// waitAnswer waits until the VM answers a call, before the calls loop.
func (c *caller) waitAnswer(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		addr := c.addr
		c.mu.Unlock()
		if addr != "" && c.check(context.Background(), addr) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("the VM did not answer within 30s")
}

// reset starts a measure, from the VM's address now.
func (c *caller) reset() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.from, c.lastOld, c.firstNew, c.moved = c.addr, now, time.Time{}, make(chan struct{})
	return now
}

// downtime waits for the first answer at the new address and returns the
// time since the last one at the old.
func (c *caller) downtime(b *testing.B) time.Duration {
	b.Helper()
	c.mu.Lock()
	moved := c.moved
	c.mu.Unlock()
	select {
	case <-moved:
	case <-time.After(30 * time.Second):
		b.Fatal("no answer at the VM's new address within 30s of its rollout's end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstNew.Sub(c.lastOld)
}
