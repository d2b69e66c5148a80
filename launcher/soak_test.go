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

// soakKey sets the number of cycles of TestSoak; `make soak` sets 1000.
const soakKey = "VMRE_SOAK"

// TestSoak runs VMRE_SOAK launch/stop cycles, four at a time: mostly
// cooperative VMs, some that ignore SIGTERM and are killed after a short
// graceful timeout, some that crash before their handshake. Afterwards the
// host's goroutines, open fds and child processes (zombies included) must be
// where they started. It logs the figures docs/RELIABILITY.md quotes.
func TestSoak(t *testing.T) {
	cycles, _ := strconv.Atoi(os.Getenv(soakKey))
	if cycles <= 0 {
		t.Skip("set " + soakKey + "=N to run N launch/stop cycles (make soak)")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("the soak test counts processes through /proc")
	}
	const workers = 4
	before := takeCensus(t)
	t.Logf("before: %s", before)

	cooperative, err := launcher.New(launcher.Config{GracefulTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stubborn, err := launcher.New(launcher.Config{GracefulTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		kinds     = map[string]int{}
		launches  []time.Duration // cooperative launches: exec to handshake
		stops     []time.Duration // cooperative stops: Stop to Done
		failures  int
		start     = time.Now()
		jobs      = make(chan int)
		wg        sync.WaitGroup
		lastPrint = time.Now()
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if failures++; failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	for range workers {
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
						launches = append(launches, launched)
						stops = append(stops, stopped)
						mu.Unlock()
					}
				}
				mu.Lock()
				kinds[kind]++
				if time.Since(lastPrint) > 10*time.Second {
					lastPrint = time.Now()
					t.Logf("%d cycles in %s: %d fds, %d goroutines", i+1, time.Since(start).Round(time.Second), countFDs(), runtime.NumGoroutine())
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
	elapsed := time.Since(start)
	if err := cooperative.Close(); err != nil {
		t.Error(err)
	}
	if err := stubborn.Close(); err != nil {
		t.Error(err)
	}

	after := takeCensus(t)
	deadline := time.Now().Add(5 * time.Second) // goroutines that end on their own
	for !after.sameAs(before) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		after = takeCensus(t)
	}
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	t.Logf("after:  %s", after)
	t.Logf("%d cycles (%v) with %d workers in %s: %.1f cycles/s", cycles, kinds, workers, elapsed.Round(time.Millisecond), float64(cycles)/elapsed.Seconds())
	t.Logf("cooperative launch p50 %s p99 %s; stop p50 %s p99 %s",
		percentile(launches, 50), percentile(launches, 99), percentile(stops, 50), percentile(stops, 99))
	t.Logf("max RSS: host %d MiB, largest VM %d MiB", self.Maxrss>>10, children.Maxrss>>10)
	if failures > 0 {
		t.Errorf("%d of %d cycles failed", failures, cycles)
	}
	if !after.sameAs(before) {
		t.Errorf("leak: before %s, after %s", before, after)
	}
}

// census is what a host holds that a leak would grow.
type census struct {
	fds, goroutines, children, zombies int
	heapInuse                          uint64
}

func takeCensus(t *testing.T) census {
	t.Helper()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	c := census{fds: countFDs(), goroutines: runtime.NumGoroutine(), heapInuse: m.HeapInuse}
	c.children, c.zombies = countChildren(t)
	return c
}

// sameAs compares what must not grow; the heap is reported, not compared.
func (c census) sameAs(o census) bool {
	return c.fds == o.fds && c.goroutines == o.goroutines && c.children == o.children && c.zombies == o.zombies
}

func (c census) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, %d child processes (%d zombies), heap in use %d KiB",
		c.fds, c.goroutines, c.children, c.zombies, c.heapInuse>>10)
}

func countFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
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
