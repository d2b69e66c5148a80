package launcher_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// TestEnvironment checks that a VM gets the engine's variables and the
// allowed part of the host's environment, not the host's secrets.
func TestEnvironment(t *testing.T) {
	t.Setenv("VMRE_TEST_SECRET", "hunter2")
	pr, pw := io.Pipe()
	l := newLauncher(t, launcher.Config{Stdout: pw, Env: []string{vmretest.ModeKey + "=env", "GORACE=atexit_sleep_ms=0"}})
	cmd := vmretest.Command("env")
	cmd.Env = nil // take the launcher's environment
	rt, err := l.Launch(t.Context(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]bool{}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if kv, ok := strings.CutPrefix(sc.Text(), "env: "); ok {
				name, _, _ := strings.Cut(kv, "=")
				env[name] = true
			}
		}
	}()
	rt.Stop(context.Background())
	waitDone(t, rt)
	pw.Close()
	<-lines
	for _, name := range []string{"PATH", "VMRE_RUNTIME_ENGINE_ADDR", "VMRE_RUNTIME_ENGINE_TOKEN", vmretest.ModeKey} {
		if !env[name] {
			t.Errorf("VM lacks %s", name)
		}
	}
	if env["VMRE_TEST_SECRET"] {
		t.Error("VM inherited a variable outside the allowlist")
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	return len(entries)
}

// TestNoLeaks launches and stops many VMs and checks that the host's open
// fds and goroutines end where they started.
func TestNoLeaks(t *testing.T) {
	const cycles, parallel = 200, 4
	fdsBefore := openFDs(t)
	goroutinesBefore := runtime.NumGoroutine()

	l, err := launcher.New(launcher.Config{GracefulTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, cycles)
	work := make(chan int)
	for range parallel {
		wg.Go(func() {
			for i := range work {
				mode := "ok"
				if i%10 == 9 {
					mode = "exit3" // a failed launch must not leak either
				}
				rt, err := l.Launch(context.Background(), vmretest.Command(mode))
				if mode == "exit3" {
					if err == nil {
						errs <- io.ErrUnexpectedEOF
					}
					continue
				}
				if err != nil {
					errs <- err
					continue
				}
				rt.Stop(context.Background())
				<-rt.Done()
			}
		})
	}
	for i := range cycles {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	if fds := openFDs(t); fds != fdsBefore {
		t.Errorf("open fds: %d before, %d after %d launches", fdsBefore, fds, cycles)
	}
	// Goroutines that end on their own (AfterExit callbacks, connection
	// closers) may need a moment; goleak in TestMain is the strict check.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutinesBefore && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutinesBefore {
		t.Errorf("goroutines: %d before, %d after %d launches", goroutinesBefore, n, cycles)
	}
}
