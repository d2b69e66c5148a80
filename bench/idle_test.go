package bench

import (
	"bytes"
	"context"
	"os"
	"runtime/pprof"
	"testing"

	"github.com/vmre/vmre/launcher"
)

// idleVMs is how many VMs BenchmarkIdleVM keeps running at once.
const idleVMs = 16

// goroutinesKey names the file where BenchmarkIdleVM writes the goroutines.
const goroutinesKey = "VMRE_BENCH_GOROUTINES"

// BenchmarkIdleVM is the host's cost of one idle running VM: it launches 16
// minimal VMs, waits until each has answered a call on its runtime's client
// (from then on nothing more is set up for it), and reports the host's goroutines, live heap and
// goroutine stack per VM, after a full GC, the OS threads that its
// goroutines blocked in system calls hold, and its open file descriptors
// (sockets among them), against the same measures taken before the
// launches. The time per op is that of launching 16 VMs,
// settling and stopping them.
//
// With VMRE_BENCH_GOROUTINES=FILE it writes the host's goroutines with the
// 16 VMs idle to FILE, in the text form of the goroutine profile.
func BenchmarkIdleVM(b *testing.B) {
	h := newVMRE(b, launcher.Config{})
	var goroutines, heap, stack, threads, fds, sockets float64
	n := 0
	for b.Loop() {
		before := takeSnapshot()
		rts, err := h.launchSettled(idleVMs)
		after := takeSnapshot()
		if path := os.Getenv(goroutinesKey); path != "" && n == 0 {
			if err := os.WriteFile(path, goroutineProfile(), 0o644); err != nil {
				b.Error(err)
			}
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
		goroutines += float64(after.goroutines-before.goroutines) / idleVMs
		heap += (float64(after.heap) - float64(before.heap)) / idleVMs
		stack += (float64(after.stack) - float64(before.stack)) / idleVMs
		threads += (float64(after.inSyscall) - float64(before.inSyscall)) / idleVMs
		fds += float64(after.fds-before.fds) / idleVMs
		sockets += float64(after.sockets-before.sockets) / idleVMs
		n++
	}
	b.ReportMetric(goroutines/float64(n), "goroutines/VM")
	b.ReportMetric(heap/float64(n), "heap-B/VM")
	b.ReportMetric(stack/float64(n), "stack-B/VM")
	b.ReportMetric(threads/float64(n), "threads/VM")
	b.ReportMetric(fds/float64(n), "fds/VM")
	b.ReportMetric(sockets/float64(n), "sockets/VM")
}

func goroutineProfile() []byte {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return buf.Bytes()
}
