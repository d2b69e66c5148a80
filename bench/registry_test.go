package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
)

// BenchmarkLaunchPinned is Launch/vmre with the minimal VM taken from a
// plugin directory, unpinned (its command execs the file's path) and pinned
// (it execs the sealed memfd the registry made at load), one of each per
// op, so that both see the same load of the machine, in turns. It reports the median
// of each kind of launch; ns/op is the pair. Each kind has a Launcher of
// its own, named after the VM's ID (the path of a sealed VM's command is
// /proc/self/fd/N, no name).
func BenchmarkLaunchPinned(b *testing.B) {
	type kind struct {
		vm    *registry.VM
		h     *vmreHost
		times []time.Duration
	}
	var kinds [2]*kind
	for i, pinned := range []bool{false, true} {
		reg, _ := loadPlugin(b, plugins(b).minimal, pinned)
		vm := reg.VMs()[0]
		if vm.Sealed() != pinned {
			b.Fatalf("VM %s: sealed %v", vm.ID(), vm.Sealed())
		}
		kinds[i] = &kind{vm: vm, h: newVMRE(b, launcher.Config{Name: vm.ID()})}
	}
	for n := 0; b.Loop(); n++ {
		// Each kind goes first in every other op: the second launch of a
		// pair starts right after the first VM's stop.
		for j := range kinds {
			k := kinds[(n+j)%2]
			begin := time.Now()
			rt, err := k.h.launchCmd(context.Background(), k.vm.Command())
			if err != nil {
				b.Fatal(err)
			}
			k.times = append(k.times, time.Since(begin))
			b.StopTimer()
			if err := k.h.stop(rt); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(median.Of(kinds[0].times), "unpinned-ns/launch")
	b.ReportMetric(median.Of(kinds[1].times), "pinned-ns/launch")
}

// BenchmarkRegistryLoad is the one-time cost of loading a directory that
// holds the example VM (about 14 MB), and closing the registry: an
// unpinned load lists and stats the file (its digest is taken later, from
// the running VM: registry.TakeDigest), a pinned one reads and hashes it,
// copies it into a memfd and seals it. One of each per op; it reports the
// median of each (hash-ns/load is the unpinned load, named for what it did
// before). The file is in the page cache.
func BenchmarkRegistryLoad(b *testing.B) {
	var cfgs [2]registry.Config
	for i, pinned := range []bool{false, true} {
		reg, cfg := loadPlugin(b, plugins(b).example, pinned)
		if i == 0 {
			b.SetBytes(2 * reg.VMs()[0].Size())
		}
		reg.Close()
		cfgs[i] = cfg
	}
	var times [2][]time.Duration
	for n := 0; b.Loop(); n++ {
		for j := range cfgs {
			i := (n + j) % 2
			cfg := cfgs[i]
			begin := time.Now()
			reg, report, err := registry.Load(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := reg.Close(); err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], time.Since(begin))
			if err := report.Err(); err != nil || len(report.Added) != 1 || report.Added[0].Sealed() != (i == 1) {
				b.Fatalf("load: %v", err)
			}
		}
	}
	b.ReportMetric(median.Of(times[0]), "hash-ns/load")
	b.ReportMetric(median.Of(times[1]), "seal-ns/load")
}

// loadPlugin copies a plugin into a directory of its own, pinned or not,
// and loads it. The registry is closed when b ends.
func loadPlugin(b *testing.B, plugin string, pinned bool) (*registry.Registry, registry.Config) {
	b.Helper()
	dir := b.TempDir()
	name := filepath.Base(plugin)
	digest, err := copyFile(filepath.Join(dir, name), plugin)
	if err != nil {
		b.Fatal(err)
	}
	cfg := registry.Config{Dir: dir}
	if pinned {
		cfg.Pins = filepath.Join(b.TempDir(), "pins.sha256")
		if err := os.WriteFile(cfg.Pins, fmt.Appendf(nil, "%x  %s\n", digest, name), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	reg, report, err := registry.Load(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close() })
	if err := report.Err(); err != nil || len(report.Added) != 1 || report.Added[0].Pinned() != pinned {
		b.Fatalf("load %s: %v", plugin, err)
	}
	return reg, cfg
}

// copyFile copies an executable and returns its SHA-256 digest.
func copyFile(dst, src string) ([]byte, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return nil, err
	}
	return h.Sum(nil), out.Close()
}
