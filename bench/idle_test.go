package bench

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime/pprof"
	"testing"

	"github.com/vmre/vmre/internal/vmpeer"
	"github.com/vmre/vmre/launcher"
)

// idleVMs is how many VMs BenchmarkIdleVM keeps running at once.
const idleVMs = 16

// goroutinesKey names the file where BenchmarkIdleVM writes the goroutines.
const goroutinesKey = "VMRE_BENCH_GOROUTINES"

// BenchmarkIdleVM is the host's cost of one idle running VM: it launches 16
// minimal VMs, waits until each has answered a call on its runtime's client
// (from then on nothing more is set up for it), and reports per VM, against
// the same measures taken before the launches: the host's goroutines, live
// heap and goroutine stack after a full GC, the OS threads that its
// goroutines blocked in system calls hold, and its open file descriptors
// (sockets among them).
//
// The runtime's client holds a connection to its VM: the one a node would
// hold anyway to call it. Its share (client-*) is measured by opening one
// more such client per VM, with one call each; vmre's own share is the
// rest (goroutines/VM, fds/VM, heap-B/VM, ...). The time per op is not a
// result: besides launching, settling and stopping 16 VMs it holds the
// measures' full GCs and the extra clients' calls.
//
// With VMRE_BENCH_GOROUTINES=FILE it writes the host's goroutines with the
// 16 VMs idle to FILE, in the text form of the goroutine profile.
func BenchmarkIdleVM(b *testing.B) {
	h := newVMRE(b, launcher.Config{})
	// The extra clients share one pool of transports, as the runtimes' do.
	pool := vmpeer.NewPool()
	defer pool.CloseIdleConnections()
	var own, client perVM
	n := 0
	for b.Loop() {
		before := takeSnapshot()
		rts, err := h.launchSettled(idleVMs)
		settled := takeSnapshot()
		if path := os.Getenv(goroutinesKey); path != "" && n == 0 {
			if err := os.WriteFile(path, goroutineProfile(), 0o644); err != nil {
				b.Error(err)
			}
		}
		var extra []*vmpeer.Transport
		for _, rt := range rts {
			t := pool.Transport(rt.Status().Addr, nil)
			extra = append(extra, t)
			if err == nil {
				err = ping(context.Background(), &http.Client{Transport: t}, rt.Status().Addr)
			}
		}
		more := takeSnapshot()
		for _, t := range extra {
			t.Close(nil)
		}
		for _, rt := range rts {
			rt.Stop(context.Background())
		}
		for _, rt := range rts {
			if err := h.stop(rt); err != nil {
				b.Error(err)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		oneClient := diff(settled, more)
		client.add(oneClient, 1)
		own.add(diff(before, settled), 1)
		own.add(oneClient, -1)
		n++
	}
	own.report(b, n, "")
	client.report(b, n, "client-")
}

// perVM is a sum of measures per idle VM.
type perVM struct{ goroutines, heap, stack, threads, fds, sockets float64 }

// diff is the difference of two snapshots, per idle VM.
func diff(before, after snapshot) perVM {
	return perVM{
		goroutines: float64(after.goroutines-before.goroutines) / idleVMs,
		heap:       (float64(after.heap) - float64(before.heap)) / idleVMs,
		stack:      (float64(after.stack) - float64(before.stack)) / idleVMs,
		threads:    (float64(after.inSyscall) - float64(before.inSyscall)) / idleVMs,
		fds:        float64(after.fds-before.fds) / idleVMs,
		sockets:    float64(after.sockets-before.sockets) / idleVMs,
	}
}

// add adds sign times q to p.
func (p *perVM) add(q perVM, sign float64) {
	p.goroutines += sign * q.goroutines
	p.heap += sign * q.heap
	p.stack += sign * q.stack
	p.threads += sign * q.threads
	p.fds += sign * q.fds
	p.sockets += sign * q.sockets
}

func (p *perVM) report(b *testing.B, n int, prefix string) {
	b.ReportMetric(p.goroutines/float64(n), prefix+"goroutines/VM")
	b.ReportMetric(p.heap/float64(n), prefix+"heap-B/VM")
	b.ReportMetric(p.stack/float64(n), prefix+"stack-B/VM")
	b.ReportMetric(p.threads/float64(n), prefix+"threads/VM")
	b.ReportMetric(p.fds/float64(n), prefix+"fds/VM")
	b.ReportMetric(p.sockets/float64(n), prefix+"sockets/VM")
}

func goroutineProfile() []byte {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return buf.Bytes()
}
