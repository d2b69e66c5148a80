package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
)

// largeKey sets the size of BenchmarkRegistryLoadLarge's files, in MB
// (default 100).
const largeKey = "VMRE_BENCH_LARGE_MB"

// largeFiles is how many plugins BenchmarkRegistryLoadLarge's directory holds.
const largeFiles = 64

// BenchmarkRegistryLoadLarge is a node's start on a plugin directory of 64
// plugins of 100 MB each (real plugins are 30–100 MB): the minimal VM, its
// file grown to 100 MB with a hole (an ELF binary runs with bytes after its
// segments; reading a hole costs what reading the page cache does), each
// file a copy of its own. Per op: registry.Load of the directory, unpinned
// and pinned, then a Launcher starts the first VM; it reports the median
// time from the start of the load to the end of the load and to the first
// VM's process started (the launcher's Started event), and the load's
// throughput (the directory's bytes over the load). The launch's handshake
// and the VM's stop are outside the timed part; so is Close, which for a
// pinned load frees 6.4 GB of sealed copies.
//
// make bench runs it apart, with fewer ops (BENCH_LARGE): a pinned load
// reads, hashes and copies 6.4 GB.
func BenchmarkRegistryLoadLarge(b *testing.B) {
	mb := 100
	if v := os.Getenv(largeKey); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil || mb < 1 {
			b.Fatalf("%s=%q: want a size in MB", largeKey, v)
		}
	}
	plugin := plugins(b).minimal
	info, err := os.Stat(plugin)
	if err != nil {
		b.Fatal(err)
	}
	size := max(int64(mb)<<20, info.Size())
	dir, pins := largeDir(b, plugin, size)
	b.Run("unpinned", func(b *testing.B) { loadLarge(b, registry.Config{Dir: dir}, size) })
	b.Run("pinned", func(b *testing.B) { loadLarge(b, registry.Config{Dir: dir, Pins: pins}, size) })
}

func loadLarge(b *testing.B, cfg registry.Config, size int64) {
	var started time.Time
	h := newVMRE(b, launcher.Config{Hooks: &launcher.Hooks{Started: func(launcher.StartedInfo) { started = time.Now() }}})
	b.SetBytes(largeFiles * size)
	var loads, firsts []time.Duration
	for b.Loop() {
		begin := time.Now()
		reg, report, err := registry.Load(cfg)
		if err != nil {
			b.Fatal(err)
		}
		loaded := time.Since(begin)
		if err := report.Err(); err != nil || len(report.Added) != largeFiles {
			b.Fatalf("load: %d VMs, %v", len(report.Added), err)
		}
		vm := reg.VMs()[0]
		rt, err := h.l.Launch(context.Background(), vm.Command(), launcher.WithName(vm.ID()))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		loads, firsts = append(loads, loaded), append(firsts, started.Sub(begin))
		if err := h.stop(rt); err != nil {
			b.Fatal(err)
		}
		if err := reg.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(median.Of(loads), "load-ns/op")
	b.ReportMetric(median.Of(firsts), "first-exec-ns/op")
}

// largeDir makes a directory of largeFiles copies of plugin, each grown to
// size bytes, and a pins file that pins them all. It is removed when b ends.
func largeDir(b *testing.B, plugin string, size int64) (dir, pins string) {
	b.Helper()
	dir = b.TempDir()
	var lines []byte
	for i := range largeFiles {
		name := fmt.Sprintf("vm%02d", i)
		d, err := copyGrown(filepath.Join(dir, name), plugin, size)
		if err != nil {
			b.Fatal(err)
		}
		lines = fmt.Appendf(lines, "%x  %s\n", d, name)
	}
	pins = filepath.Join(b.TempDir(), "pins.sha256")
	if err := os.WriteFile(pins, lines, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir, pins
}

// copyGrown copies src to dst, grows it to size with a hole, and returns
// the SHA-256 digest of the result.
func copyGrown(dst, src string, size int64) ([]byte, error) {
	if _, err := copyFile(dst, src); err != nil {
		return nil, err
	}
	if err := os.Truncate(dst, size); err != nil {
		return nil, err
	}
	f, err := os.Open(dst)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
