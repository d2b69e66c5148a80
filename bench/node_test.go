package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/supervise"
)

// BenchmarkScrape is the cost of one scrape of a node's /metrics with 20
// running VMs (vms=20): the supervisor's states, each VM's /proc, the
// counters of their launches and output, the Go and process collectors,
// encoded as Prometheus text; vms=0 is the node alone. It reports the
// scrape's size; -benchmem its allocations.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{0, 20} {
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) { benchScrape(b, n) })
	}
}

func benchScrape(b *testing.B, scrapeVMs int) {
	p := plugins(b)
	var sup *supervise.Supervisor
	var l *launcher.Launcher
	m, err := metrics.New(metrics.Config{
		VMs:            func() []supervise.VM { return sup.List() },
		Output:         func() []launcher.OutputStat { return l.OutputStats() },
		HostCollectors: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err = launcher.New(launcher.Config{Hooks: m.LauncherHooks()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	running := make(chan struct{}, scrapeVMs)
	sup, err = supervise.New(supervise.Config{Launcher: supervise.FromLauncher(l), Hooks: &supervise.Hooks{State: func(vm supervise.VM) {
		if vm.State == supervise.StateRunning {
			running <- struct{}{}
		}
	}}})
	if err != nil {
		b.Fatal(err)
	}
	defer sup.Close(context.Background())
	for i := range scrapeVMs {
		command := func() (*exec.Cmd, error) { return exec.Command(p.minimal), nil }
		if err := sup.Add(supervise.Spec{Name: fmt.Sprintf("vm%02d", i), Command: command}); err != nil {
			b.Fatal(err)
		}
	}
	for range scrapeVMs {
		<-running
	}
	h := m.Handler()
	var size int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if want := fmt.Sprintf(`vmre_vm_resident_memory_bytes{vm="vm%02d"}`, scrapeVMs-1); rec.Code != 200 || scrapeVMs > 0 && !strings.Contains(rec.Body.String(), want) {
			b.Fatalf("scrape: %d\n%s", rec.Code, rec.Body.String())
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkLogBacklog is the memory a node holds for one VM's log backlog
// (admin.Logs, for TailLogs) once it is full: records of 100-byte lines
// with three fields, as a VM logs them, until the backlog's limit drops
// the oldest. It reports the heap per VM after a GC.
func BenchmarkLogBacklog(b *testing.B) {
	const vms = 4
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		logs := admin.NewLogs(0)
		for v := range vms {
			log := slog.New(logs.Handler(slog.NewTextHandler(io.Discard, nil))).
				With("vm", fmt.Sprintf("vm%d", v), "pid", 1000+v).With("stream", "stderr")
			for i := range 10000 {
				log.Info("block accepted at the height the chain reached, with its hash and its parent's",
					"height", i, "hash", "0x5e3c9f1b2a7d4e6f", "at", time.Unix(int64(i), 0))
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/vms/1024, "KiB/VM")
		runtime.KeepAlive(logs)
	}
}
