//go:build unix

package bench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/bench/internal/median"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
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
//     resident memory, per VM, with the 64 idle, their digests taken
//     (awaitDigests), and their log backlogs (nearly) empty; full-heap-B/VM and full-rss-B/VM once each VM has
//     written 1 MiB of log lines (SIGUSR1 to minvm with MINVM_FILL_LOG),
//     more than its backlog keeps;
//   - stopped-ns/op: from the end of Run's context to Run's return, all 64
//     stopped and reaped;
//   - host-cpu-ns/op and vm-cpu-ns/op: the CPU time the node's process
//     (this one) and the 64 VMs spent from Run to all running, user and
//     kernel; cpu-bound-ns/op, their sum over the CPUs: the least time the
//     start can take on this machine however its work is ordered;
//     stop-host-cpu-ns/op, stop-vm-cpu-ns/op and stop-cpu-bound-ns/op the
//     same for the stop.
//
// Between ops it waits until the live heap is back to where it was before
// the first (settle). make bench runs it apart, with BenchmarkRegistryLoadLarge:
// an op takes seconds.
//
// node runs under the launcher's default limit on concurrent launches
// (launcher.Config.MaxConcurrentLaunches: 4 per CPU); node-limit=1-per-cpu
// and node-limit=none the same with one launch per CPU and with no limit;
// node-data-dir with a new data directory each op, as vmre node always
// has one: the node then keeps a copy of each VM's bytes there, in the
// background, from its first run on.
//
// floor is 64 floor plugins started at once with os/exec until all have
// dialled back (ns/op), then stopped at once, SIGTERM and wait, until all
// are reaped (stopped-ns/op), with the same measures of CPU time.
func BenchmarkNode64(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		f := newFloor(b)
		var stops []time.Duration
		var cpu cpuMeasures
		for b.Loop() {
			hostBefore, childrenBefore := selfCPU(), childrenCPU()
			cmds, err := all(nodeVMs, func(int) (*exec.Cmd, error) { return f.start() })
			b.StopTimer()
			host := selfCPU() - hostBefore
			var vms time.Duration
			for _, cmd := range cmds {
				vms += processCPU(cmd.Process.Pid)
			}
			hostBefore = selfCPU()
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
			cpu.add(host, vms, selfCPU()-hostBefore, childrenCPU()-childrenBefore-vms)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(median.Of(stops), "stopped-ns/op")
		cpu.report(b)
	})
	for _, l := range []struct {
		name    string
		limit   int  // launcher.Config.MaxConcurrentLaunches
		dataDir bool // a node.Config.DataDir of its own for each op
	}{{"node", 0, false}, {"node-limit=1-per-cpu", runtime.NumCPU(), false}, {"node-limit=none", -1, false}, {"node-data-dir", 0, true}} {
		b.Run(l.name, func(b *testing.B) {
			dir := nodePluginDir(b)
			var m nodeMeasures
			nodeBaseOnce.Do(func() { nodeBase = takeSnapshot().heap })
			for b.Loop() {
				b.StopTimer()
				settle(b, nodeBase)
				dataDir := ""
				if l.dataDir {
					dataDir = b.TempDir()
				}
				b.StartTimer()
				m.add(runNode64(b, dir, l.limit, dataDir))
			}
			m.report(b)
		})
	}
}

// nodePluginDir returns a plugin directory of nodeVMs copies of the
// minimal VM, removed at the end of b.
func nodePluginDir(b *testing.B) string {
	dir := b.TempDir()
	for i := range nodeVMs {
		if _, err := copyFile(filepath.Join(dir, fmt.Sprintf("vm%02d", i)), plugins(b).minimal); err != nil {
			b.Fatal(err)
		}
	}
	return dir
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
	cpu                          cpuMeasures
}

// nodeOp is one op's measures, per VM for memory.
type nodeOp struct {
	stop                         time.Duration
	heap, rss, fullHeap, fullRSS float64
	// The CPU time of the host and of the VMs, from Run to all running,
	// and during the stop.
	host, vms, stopHost, stopProcs time.Duration
}

func (m *nodeMeasures) add(op nodeOp) {
	m.stops = append(m.stops, op.stop)
	m.heap, m.rss = append(m.heap, op.heap), append(m.rss, op.rss)
	m.fullHeap, m.fullRSS = append(m.fullHeap, op.fullHeap), append(m.fullRSS, op.fullRSS)
	m.cpu.add(op.host, op.vms, op.stopHost, op.stopProcs)
}

func (m *nodeMeasures) report(b *testing.B) {
	b.ReportMetric(median.Of(m.stops), "stopped-ns/op")
	b.ReportMetric(median.Of(m.heap), "heap-B/VM")
	b.ReportMetric(median.Of(m.rss), "rss-B/VM")
	b.ReportMetric(median.Of(m.fullHeap), "full-heap-B/VM")
	b.ReportMetric(median.Of(m.fullRSS), "full-rss-B/VM")
	m.cpu.report(b)
}

// cpuMeasures are the CPU times of a start and a stop of many processes,
// the host's and theirs, op by op.
type cpuMeasures struct {
	host, vms, bound, stopHost, stopProcs, stopBound []time.Duration
}

// add records one op's: the host's and the processes' CPU time during the
// start and during the stop.
func (c *cpuMeasures) add(host, vms, stopHost, stopProcs time.Duration) {
	cpus := time.Duration(runtime.NumCPU())
	c.host, c.vms, c.bound = append(c.host, host), append(c.vms, vms), append(c.bound, (host+vms)/cpus)
	c.stopHost, c.stopProcs = append(c.stopHost, stopHost), append(c.stopProcs, stopProcs)
	c.stopBound = append(c.stopBound, (stopHost+stopProcs)/cpus)
}

// report reports the medians, and the CPU-bound least time of the start
// and the stop: the CPU time of host and processes together over the CPUs.
func (c *cpuMeasures) report(b *testing.B) {
	b.ReportMetric(median.Of(c.host), "host-cpu-ns/op")
	b.ReportMetric(median.Of(c.vms), "vm-cpu-ns/op")
	b.ReportMetric(median.Of(c.bound), "cpu-bound-ns/op")
	b.ReportMetric(median.Of(c.stopHost), "stop-host-cpu-ns/op")
	b.ReportMetric(median.Of(c.stopProcs), "stop-vm-cpu-ns/op")
	b.ReportMetric(median.Of(c.stopBound), "stop-cpu-bound-ns/op")
}

// runNode64 runs one op of BenchmarkNode64's node, whose launcher has
// MaxConcurrentLaunches limit: the timer runs from Run to all VMs running.
func runNode64(b *testing.B, dir string, limit int, dataDir string) nodeOp {
	b.StopTimer()
	before, rssBefore := takeSnapshot(), residentBytes()
	childrenBefore := childrenCPU()
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
		DataDir:   dataDir,
		Listener:  ln,
		Launch:    launcher.Config{Env: []string{"MINVM_FILL_LOG=" + strconv.Itoa(fillBytes)}, MaxConcurrentLaunches: limit},
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
	op := profiles.Add(1)
	stopProfile := profileSpan(b, "start", op)
	hostBefore := selfCPU()
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
	stopProfile()
	host := selfCPU() - hostBefore
	var vms time.Duration
	mu.Lock()
	for _, pid := range pids {
		vms += processCPU(pid)
	}
	mu.Unlock()
	awaitDigests(b, n)
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
	var vmsBeforeStop time.Duration
	mu.Lock()
	for _, pid := range pids {
		vmsBeforeStop += processCPU(pid)
	}
	mu.Unlock()
	stopProfile = profileSpan(b, "stop", op)
	hostBefore = selfCPU()
	begin := time.Now()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	stopped := time.Since(begin)
	stopHost := selfCPU() - hostBefore
	stopProfile()
	b.StartTimer()
	perVM := func(after, before float64) float64 { return (after - before) / nodeVMs }
	return nodeOp{
		stop:      stopped,
		host:      host,
		vms:       vms,
		stopHost:  stopHost,
		stopProcs: childrenCPU() - childrenBefore - vmsBeforeStop,
		heap:      perVM(float64(idle.heap), float64(before.heap)),
		rss:       perVM(float64(rssIdle), float64(rssBefore)),
		fullHeap:  perVM(float64(full.heap), float64(before.heap)),
		fullRSS:   perVM(float64(rssFull), float64(rssBefore)),
	}
}

// digestsTimeout bounds awaitDigests' wait.
const digestsTimeout = 30 * time.Second

// awaitDigests waits until the node knows the digests of all its VMs, as
// its admin API lists them: it takes them in the background once its
// launches have quieted down (registry.TakeDigest), hashing each VM's
// file, 14 MB here, and that work is neither the node's idle cost nor its
// stop's.
func awaitDigests(b *testing.B, n *node.Node) {
	c := adminv1connect.NewAdminServiceClient(&http.Client{Transport: handlerTransport{n.Handler()}}, "http://node")
	deadline := time.Now().Add(digestsTimeout)
	for {
		resp, err := c.ListVMs(context.Background(), connect.NewRequest(&adminv1.ListVMsRequest{}))
		if err != nil {
			b.Fatal(err)
		}
		known := 0
		for _, vm := range resp.Msg.GetVms() {
			if vm.GetDigest() != "" {
				known++
			}
		}
		if known == nodeVMs {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the node knows %d digests of its %d VMs %s after all ran", known, nodeVMs, digestsTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// handlerTransport is an http.RoundTripper that serves each request with
// a handler, in the process: awaitDigests' calls to the node's admin API.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// profileKey names files for CPU profiles of the node's process over
// BenchmarkNode64's two spans alone, from Run to all VMs running and from
// the end of Run's context to Run's return: each op's are written to
// FILE.SUB.start.N and FILE.SUB.stop.N (SUB the sub-benchmark, N the op),
// to read with go tool pprof. Not with -test.cpuprofile, which takes the
// profiler for the whole run.
const profileKey = "VMRE_BENCH_NODE_PROFILE"

// profiles counts the ops profiled, to name their files.
var profiles atomic.Int32

// profileSpan starts the CPU profile of an op's span (start or stop) when
// profileKey asks for one, and returns what stops it and writes it. n
// names the op.
func profileSpan(b *testing.B, span string, n int32) (stop func()) {
	name := os.Getenv(profileKey)
	if name == "" {
		return func() {}
	}
	sub := strings.ReplaceAll(strings.TrimPrefix(b.Name(), "BenchmarkNode64/"), "/", "_")
	f, err := os.Create(fmt.Sprintf("%s.%s.%s.%d", name, sub, span, n))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
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
