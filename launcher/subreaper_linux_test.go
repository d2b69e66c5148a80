package launcher_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// nodePlanKey is what a "subreaper-node" does (see subreaperNode).
const nodePlanKey = "VMRE_TEST_NODE_PLAN"

func init() {
	vms["subreaper-node"] = func([]string) int { return subreaperNode() }
}

// subreaperNode is a node: it runs a Subreaper, then does what
// nodePlanKey says, printing "name=value" lines on stdout:
//
//   - runaways: launches two "runaway" VMs, a (its runaway carries the
//     VM's environment) and b (it does not), and prints ready=1; on
//     SIGUSR1 it stops a and prints stopped=a; on SIGTERM it stops b,
//     closes the Subreaper, prints closed=1 and exits 0.
//   - statuses: launches 40 VMs that exit 3 before their handshake, 4 at a
//     time, and prints statuses=N, the number whose launch error says
//     exit code 3.
//   - churn: keeps OS threads coming and going and a hundred goroutines
//     busy, launches three "grandchild" VMs and an "escapee", prints
//     launched=1, and runs until it is killed.
func subreaperNode() int {
	sr, err := launcher.StartSubreaper(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	l, err := launcher.New(launcher.Config{
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Stdout:          os.Stdout,
		GracefulTimeout: vmretest.WaitTimeout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	launch := func(mode string, env ...string) (*launcher.Runtime, error) {
		cmd := vmretest.Command(mode)
		cmd.Env = append(cmd.Env, env...)
		return l.Launch(context.Background(), cmd)
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch os.Getenv(nodePlanKey) {
	case "runaways":
		a, err := launch("runaway", runawayNameKey+"=a")
		if err != nil {
			return fail(err)
		}
		b, err := launch("runaway", runawayNameKey+"=b", runawayBareKey+"=1")
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready=1")
		for sig := range sigs {
			if sig == syscall.SIGUSR1 {
				a.Shutdown(context.Background())
				fmt.Println("stopped=a")
				continue
			}
			b.Shutdown(context.Background())
			if err := sr.Close(); err != nil {
				return fail(err)
			}
			fmt.Println("closed=1")
			return 0
		}
	case "statuses":
		var ok atomic.Int32
		var wg sync.WaitGroup
		slots := make(chan struct{}, 4)
		for range 40 {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				_, err := launch("exit3")
				var lerr *launcher.LaunchError
				if errors.As(err, &lerr) && lerr.Exit != nil && lerr.Exit.Code == 3 {
					ok.Add(1)
				} else {
					fmt.Fprintln(os.Stderr, "exit3:", err)
				}
			})
		}
		wg.Wait()
		fmt.Printf("statuses=%d\n", ok.Load())
		sr.Close()
		return 0
	case "churn":
		for range 4 {
			go func() {
				for {
					done := make(chan struct{})
					go func() {
						runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
						close(done)
					}()
					<-done
				}
			}()
		}
		for range 100 {
			go func() {
				for {
					time.Sleep(50 * time.Microsecond)
				}
			}()
		}
		for _, mode := range []string{"grandchild", "grandchild", "grandchild", "escapee"} {
			rt, err := launch(mode)
			if err != nil {
				return fail(err)
			}
			fmt.Printf("vm=%d\n", rt.Status().Pid)
		}
		fmt.Println("launched=1")
		blockForever()
	}
	return fail(fmt.Errorf("unknown plan %q", os.Getenv(nodePlanKey)))
}

// all returns the pids of the first n lines that start with prefix, once
// there are n, and has the test's cleanup kill any left.
func (r *reaper) all(t *testing.T, prefix string, n int) []int {
	t.Helper()
	var pids []int
	for _, rest := range r.out.awaitAll(t, prefix, n) {
		pid, err := strconv.Atoi(rest)
		if err != nil {
			t.Fatalf("%s%s: %v", prefix, rest, err)
		}
		pids = append(pids, pid)
	}
	r.mu.Lock()
	r.pids = append(r.pids, pids...)
	r.mu.Unlock()
	return pids
}

// gone waits until pid is gone from /proc, not even a zombie: it was
// killed and reaped.
func gone(t *testing.T, what string, pid int) {
	t.Helper()
	if !vmretest.Eventually(func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return os.IsNotExist(err)
	}) {
		t.Errorf("%s (pid %d) is still there: state %q", what, pid, vmretest.ProcessState(pid))
	}
}

// TestSubreaperEndsRunaways: a VM's descendant that left its session and
// lost its parent (a daemon's double fork) has no parent chain to the VM.
// Under a Subreaper the node adopts it: the VM's stop finds it by the VM's
// token in its environment and ends it, and the Subreaper reaps it. One
// whose environment is not the VM's is the VM's no more; the Subreaper's
// Close, at the node's end, ends it.
func TestSubreaperEndsRunaways(t *testing.T) {
	t.Parallel()
	r := startReaper(t, "subreaper-node", nodePlanKey+"=runaways")
	node := r.pid(t, "host")
	a, b := r.pid(t, "runaway-a"), r.pid(t, "runaway-b")
	r.await(t, "ready=")
	for _, pid := range []int{a, b} {
		if !vmretest.SignalIgnored(pid, syscall.SIGTERM) {
			t.Fatalf("the runaway %d does not ignore SIGTERM", pid)
		}
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); len(st) == 0 {
			t.Fatalf("runaway %d is not running", pid)
		}
	}

	syscall.Kill(node, syscall.SIGUSR1)
	r.await(t, "stopped=a")
	gone(t, "the runaway of the VM stopped", a)
	if vmretest.ProcessGone(b) {
		t.Fatalf("the runaway %d of the VM still running is gone", b)
	}

	syscall.Kill(node, syscall.SIGTERM)
	r.await(t, "closed=")
	gone(t, "the runaway without the VM's environment, after the Subreaper's Close", b)
	if got := r.reaped(t, node); got != "exit=0" {
		t.Errorf("the node ended with %s; want exit=0", got)
	}
}

// TestSubreaperLeavesVMsTheirStatus: the Subreaper reaps what it adopted,
// never a VM, whose Runtime reaps it by its pid: VMs that die at once, as
// they are forked, all report their own exit code.
func TestSubreaperLeavesVMsTheirStatus(t *testing.T) {
	t.Parallel()
	r := startReaper(t, "subreaper-node", nodePlanKey+"=statuses")
	if got := r.await(t, "statuses="); got != "40" {
		t.Errorf("%s of 40 launches reported the VM's exit code 3", got)
	}
}

// TestNodeKilledLeavesNoSurvivor: a node that runs a Subreaper, whose
// threads come and go and whose goroutines are busy, is killed with
// SIGKILL. No VM, nor any VM's descendant, survives it: the parent-death
// signal (from the thread that forked the VMs, which lives as long as the
// Launcher) and the lease end the VMs, which end their trees. The reaper
// above the node reaps each.
func TestNodeKilledLeavesNoSurvivor(t *testing.T) {
	t.Parallel()
	r := startReaper(t, "subreaper-node", nodePlanKey+"=churn", vmReadyKey+"=1")
	r.await(t, "launched=")
	vms := r.all(t, "vm=", 4)
	r.all(t, "ready=", 4) // each VM has read its handshake's answer
	pids := slices.Concat(vms, r.all(t, "grandchild=", 3), r.all(t, "escapee=", 1))
	for _, pid := range pids {
		if vmretest.ProcessGone(pid) {
			t.Fatalf("pid %d is gone before the node is killed", pid)
		}
	}
	start := time.Now()
	r.send(t, "kill")
	for _, pid := range pids {
		got := r.reaped(t, pid)
		t.Logf("pid %d ended with %s", pid, got)
	}
	if elapsed := time.Since(start); elapsed > hostDeathBound {
		t.Errorf("the node's VMs and their descendants were gone %s after its SIGKILL; want within %s", elapsed, hostDeathBound)
	}
}
