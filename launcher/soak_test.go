package launcher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

const (
	// soakKey sets the number of cycles of TestSoak; `make soak` sets 1000.
	soakKey = "VMRE_SOAK"
	// shortSoak is the number of cycles of TestSoak in `make test`.
	shortSoak = 300
	// soakWarmUp cycles run before the soak is measured: what the first
	// launches allocate once (pools, the runtime's caches) is not a leak.
	soakWarmUp = 40
	// soakHeapSlack is how much the heap in use, after a collection, may
	// differ once the launchers of the soak are closed and dropped: every
	// launch's memory is then garbage. It is the noise of the runtime's own
	// structures, well under what one retained Runtime per cycle would add.
	soakHeapSlack = 1 << 20
)

// TestSoak runs launch/stop cycles, four at a time: mostly cooperative VMs,
// some that ignore SIGTERM and are killed after a short graceful timeout,
// some that crash before their handshake. Afterwards the host's goroutines,
// open fds and child processes (zombies included) must be where they
// started, and so must its heap once the launchers are closed. It runs
// shortSoak cycles, or VMRE_SOAK (`make soak`), and logs the figures
// docs/RELIABILITY.md quotes.
func TestSoak(t *testing.T) {
	cycles := shortSoak
	if n, err := strconv.Atoi(os.Getenv(soakKey)); err == nil && n > 0 {
		cycles = n
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("the soak test counts processes through /proc")
	}
	soak(t, soakWarmUp) // not measured
	before := takeCensus(t)
	t.Logf("before: %s", before)
	res := soak(t, cycles)

	// What is let go on its own is reported by nothing: the goroutines of
	// the engine's connections of VMs that are gone, and the HTTP/2 client
	// connections to VMs, which net/http keeps for 5 s after they close
	// when they never carried a request. Poll.
	after := takeCensus(t)
	vmretest.Eventually(func() bool { after = takeCensus(t); return after.within(before) && !after.heapGrew(before) })
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	t.Logf("after:  %s", after)
	t.Logf("%d cycles (%v) with %d workers in %s: %.1f cycles/s", cycles, res.kinds, soakWorkers,
		res.elapsed.Round(time.Millisecond), float64(cycles)/res.elapsed.Seconds())
	t.Logf("heap in use with the launchers still open: %d KiB", res.heapOpen>>10)
	t.Logf("cooperative launch p50 %s p99 %s; stop p50 %s p99 %s",
		percentile(res.launches, 50), percentile(res.launches, 99), percentile(res.stops, 50), percentile(res.stops, 99))
	t.Logf("max RSS: host %d MiB, largest VM %d MiB", self.Maxrss>>10, children.Maxrss>>10)
	if !after.within(before) {
		t.Errorf("leak: before %s, after %s", before, after)
	}
	if after.heapGrew(before) {
		t.Errorf("the heap in use grew %d KiB over %d cycles and kept it once the launchers were closed",
			(int64(after.heapInuse)-int64(before.heapInuse))>>10, cycles)
	}
}

const soakWorkers = 4

// soakResult is what one soak measured.
type soakResult struct {
	kinds    map[string]int
	launches []time.Duration // cooperative launches: exec to handshake
	stops    []time.Duration // cooperative stops: Stop to Done
	elapsed  time.Duration
	heapOpen uint64 // heap in use after a collection, the launchers still open
	failures int
}

// soak runs cycles launch/stop cycles on launchers of its own, which it
// closes, failing t for a cycle that does not end as its kind must.
func soak(t *testing.T, cycles int) soakResult {
	t.Helper()
	cooperative, err := launcher.New(launcher.Config{GracefulTimeout: vmretest.WaitTimeout})
	if err != nil {
		t.Fatal(err)
	}
	stubborn, err := launcher.New(launcher.Config{GracefulTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		res       = soakResult{kinds: map[string]int{}}
		start     = time.Now()
		jobs      = make(chan int)
		wg        sync.WaitGroup
		lastPrint = time.Now()
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if res.failures++; res.failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	for range soakWorkers {
		wg.Go(func() {
			for i := range jobs {
				kind, l := "cooperative", cooperative
				switch i % 10 {
				case 3:
					kind, l = "stubborn", stubborn
				case 7:
					kind = "crash"
				}
				mode := map[string]string{"cooperative": "ok", "stubborn": "stubborn", "crash": "exit3"}[kind]
				begin := time.Now()
				rt, err := l.Launch(context.Background(), vmretest.Command(mode))
				launched := time.Since(begin)
				if kind == "crash" {
					if !errors.Is(err, vmre.ErrProcessNotFound) {
						fail("cycle %d: a crashing VM launched with %v", i, err)
					}
				} else if err != nil {
					fail("cycle %d (%s): %v", i, kind, err)
				} else {
					begin = time.Now()
					rt.Stop(context.Background())
					exit, err := rt.Wait(context.Background())
					stopped := time.Since(begin)
					switch {
					case err != nil:
						fail("cycle %d (%s): %v", i, kind, err)
					case kind == "cooperative" && (!exit.Success() || exit.Stage != launcher.StageTerm):
						fail("cycle %d: cooperative VM ended with %v", i, exit)
					case kind == "stubborn" && (!exit.Killed() || exit.Stage != launcher.StageKill):
						fail("cycle %d: stubborn VM ended with %v", i, exit)
					}
					if kind == "cooperative" {
						mu.Lock()
						res.launches = append(res.launches, launched)
						res.stops = append(res.stops, stopped)
						mu.Unlock()
					}
				}
				mu.Lock()
				res.kinds[kind]++
				if time.Since(lastPrint) > 10*time.Second {
					lastPrint = time.Now()
					t.Logf("%d cycles in %s: %d fds, %d goroutines", i+1, time.Since(start).Round(time.Second), fdCount(), runtime.NumGoroutine())
				}
				mu.Unlock()
			}
		})
	}
	for i := range cycles {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.heapOpen = heapInuse()
	if err := cooperative.Close(); err != nil {
		t.Error(err)
	}
	if err := stubborn.Close(); err != nil {
		t.Error(err)
	}
	if res.failures > 0 {
		t.Errorf("%d of %d cycles failed", res.failures, cycles)
	}
	return res
}

// census is what a host holds that a leak would grow.
type census struct {
	fds, goroutines, children, zombies int
	heapInuse                          uint64
}

func takeCensus(t *testing.T) census {
	t.Helper()
	c := census{fds: fdCount(), goroutines: runtime.NumGoroutine(), heapInuse: heapInuse()}
	c.children, c.zombies = countChildren(t)
	return c
}

// heapInuse is the heap in use after a full collection: two, so that the
// sync.Pools, which keep their items for one more cycle, are empty.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// within reports whether c holds no more than o; the heap is compared with
// a slack. (o may still count goroutines of the warm-up that were ending.)
func (c census) within(o census) bool {
	return c.fds <= o.fds && c.goroutines <= o.goroutines && c.children <= o.children && c.zombies <= o.zombies
}

// heapGrew reports whether c's heap in use exceeds o's by more than
// soakHeapSlack.
func (c census) heapGrew(o census) bool {
	return int64(c.heapInuse)-int64(o.heapInuse) > soakHeapSlack
}

func (c census) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, %d child processes (%d zombies), heap in use %d KiB",
		c.fds, c.goroutines, c.children, c.zombies, c.heapInuse>>10)
}

// countChildren scans /proc for processes whose parent is this one.
func countChildren(t *testing.T) (children, zombies int) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited while we looked
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(stat[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(string(fields[1])); ppid != self {
			continue
		}
		children++
		if string(fields[0]) == "Z" {
			zombies++
		}
	}
	return children, zombies
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}

// fdCount is the count of open fds, or -1 without /proc.
func fdCount() int {
	if n, ok := vmretest.OpenFDs(); ok {
		return n
	}
	return -1
}
