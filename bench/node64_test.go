//go:build unix

package bench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// nodeVMs is how many VMs BenchmarkNode64's node runs.
const nodeVMs = 64

// fillBytes is how much log output each VM writes to fill its backlog:
// more than the node keeps (admin.DefaultBacklogBytes, 256 KiB).
const fillBytes = 1 << 20

// BenchmarkNode64 is a node of 64 VMs, as a validator with dozens of chains
// runs: package node on a plugin directory of 64 copies of the minimal VM,
// served on a loopback listener, its VMs' output into a handler that keeps
// nothing (the node's backlog keeps what it keeps). Per op, against the
// measures taken before node.New:
//
//   - ns/op: from Run to all 64 running (the supervisor's State hook);
//   - heap-B/VM and rss-B/VM: the process's live heap after a GC, and its
//     resident memory, per VM, with the 64 idle and their log backlogs
//     (nearly) empty; full-heap-B/VM and full-rss-B/VM once each VM has
//     written 1 MiB of log lines (SIGUSR1 to minvm with MINVM_FILL_LOG),
//     more than its backlog keeps;
//   - stopped-ns/op: from the end of Run's context to Run's return, all 64
//     stopped and reaped.
//
// Between ops it waits until the live heap is back to where it was before
// the first (settle). make bench runs it apart, with BenchmarkRegistryLoadLarge:
// an op takes seconds.
//
// floor is 64 floor plugins started at once with os/exec until all have
// dialled back (ns/op), then stopped at once, SIGTERM and wait, until all
// are reaped (stopped-ns/op).
func BenchmarkNode64(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		f := newFloor(b)
		var stops []time.Duration
		for b.Loop() {
			cmds, err := all(nodeVMs, func(int) (*exec.Cmd, error) { return f.start() })
			b.StopTimer()
			begin := time.Now()
			var wg sync.WaitGroup
			for _, cmd := range cmds {
				wg.Go(func() {
					if err := f.stop(cmd); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			stops = append(stops, time.Since(begin))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(median.Of(stops), "stopped-ns/op")
	})
	b.Run("node", func(b *testing.B) {
		dir := b.TempDir()
		for i := range nodeVMs {
			if _, err := copyFile(filepath.Join(dir, fmt.Sprintf("vm%02d", i)), plugins(b).minimal); err != nil {
				b.Fatal(err)
			}
		}
		var m nodeMeasures
		nodeBaseOnce.Do(func() { nodeBase = takeSnapshot().heap })
		for b.Loop() {
			b.StopTimer()
			settle(b, nodeBase)
			b.StartTimer()
			m.add(runNode64(b, dir))
		}
		m.report(b)
	})
}

// nodeBase is the live heap before BenchmarkNode64's first node, taken once
// for all its counts: the memory of a count's last node is let go in the
// next count's first op.
var (
	nodeBaseOnce sync.Once
	nodeBase     uint64
)

// settleTimeout bounds settle's wait.
const settleTimeout = 15 * time.Second

// settle waits until the live heap is back within 2 MiB of base, as it was
// before the first op: net/http keeps a closed client connection for 5 s
// (a timer of its own), and with it the Runtime of its VM and the node's
// logger, backlogs included, so that the memory of an op's node would count
// in the next op's.
func settle(b *testing.B, base uint64) {
	deadline := time.Now().Add(settleTimeout)
	for takeSnapshot().heap > base+2<<20 {
		if time.Now().After(deadline) {
			b.Logf("the live heap is still %d bytes above its start %s after the last op", takeSnapshot().heap-base, settleTimeout)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeMeasures are BenchmarkNode64's measures of its ops.
type nodeMeasures struct {
	stops                        []time.Duration
	heap, rss, fullHeap, fullRSS []float64
}

// nodeOp is one op's measures, per VM for memory.
type nodeOp struct {
	stop                         time.Duration
	heap, rss, fullHeap, fullRSS float64
}

func (m *nodeMeasures) add(op nodeOp) {
	m.stops = append(m.stops, op.stop)
	m.heap, m.rss = append(m.heap, op.heap), append(m.rss, op.rss)
	m.fullHeap, m.fullRSS = append(m.fullHeap, op.fullHeap), append(m.fullRSS, op.fullRSS)
}

func (m *nodeMeasures) report(b *testing.B) {
	b.ReportMetric(median.Of(m.stops), "stopped-ns/op")
	b.ReportMetric(median.Of(m.heap), "heap-B/VM")
	b.ReportMetric(median.Of(m.rss), "rss-B/VM")
	b.ReportMetric(median.Of(m.fullHeap), "full-heap-B/VM")
	b.ReportMetric(median.Of(m.fullRSS), "full-rss-B/VM")
}

// runNode64 runs one op of BenchmarkNode64's node: the timer runs from Run
// to all VMs running.
func runNode64(b *testing.B, dir string) nodeOp {
	b.StopTimer()
	before, rssBefore := takeSnapshot(), residentBytes()
	var mu sync.Mutex
	pids := map[string]int{}
	running := make(chan struct{}, nodeVMs)
	filled := make(chan struct{}, nodeVMs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	n, err := node.New(node.Config{
		PluginDir: dir,
		Listener:  ln,
		Launch:    launcher.Config{Env: []string{"MINVM_FILL_LOG=" + strconv.Itoa(fillBytes)}},
		Logger:    slog.New(&filledCounter{filled: filled}),
		Hooks: &node.Hooks{State: func(vm supervise.VM) {
			if vm.State != supervise.StateRunning {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if _, ok := pids[vm.Name]; !ok {
				pids[vm.Name] = vm.Pid
				running <- struct{}{}
			}
		}},
	})
	if err != nil {
		ln.Close()
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.StartTimer()
	go func() { done <- n.Run(ctx) }()
	for range nodeVMs {
		select {
		case <-running:
		case err := <-done:
			b.Fatalf("Run returned before all VMs ran: %v", err)
		}
	}
	b.StopTimer()
	idle, rssIdle := takeSnapshot(), residentBytes()
	mu.Lock()
	for name, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			b.Errorf("VM %s (pid %d): %v", name, pid, err)
		}
	}
	mu.Unlock()
	for range nodeVMs {
		<-filled
	}
	full, rssFull := takeSnapshot(), residentBytes()
	begin := time.Now()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	stopped := time.Since(begin)
	b.StartTimer()
	perVM := func(after, before float64) float64 { return (after - before) / nodeVMs }
	return nodeOp{
		stop:     stopped,
		heap:     perVM(float64(idle.heap), float64(before.heap)),
		rss:      perVM(float64(rssIdle), float64(rssBefore)),
		fullHeap: perVM(float64(full.heap), float64(before.heap)),
		fullRSS:  perVM(float64(rssFull), float64(rssBefore)),
	}
}

// filledCounter is the node's log handler in BenchmarkNode64: it keeps
// nothing, and tells each record "log filled", a VM's last line of a
// fill, on filled.
type filledCounter struct{ filled chan<- struct{} }

// Enabled is at the info level, a node's default.
func (h *filledCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *filledCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "log filled" {
		h.filled <- struct{}{}
	}
	return nil
}

func (h *filledCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *filledCounter) WithGroup(string) slog.Handler      { return h }

// residentBytes is the process's resident memory (VmRSS), or 0 where
// /proc/self/status does not tell it.
func residentBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
