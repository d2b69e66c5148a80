package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/launcher"
)

// concurrency is how many VMs BenchmarkLaunchConcurrent starts at once.
const concurrency = 16

// BenchmarkLaunch is exec to a VM whose server has answered a first call,
// one VM at a time. The floor is plain os/exec of a plugin that dials the
// host and writes a line, up to the host reading that line; init-only is the
// same for the minimal VM's own binary told to do just that (its start-up,
// imports and package init, without client.Serve); vmre is Launcher.Launch
// of the minimal VM on client.Serve, up to a GET of its /ping handler with
// the runtime's client; vmre-no-warm-up is the same VM without client.Serve's
// warm-up (client.WithoutWarmUp).
// vmre minus init-only is what the engine adds to the VM's own start-up.
// Stopping the VM is outside the timed part in all three. vmre also reports
// the median time the engine spent on the VM's Initialize call
// (initialize-ns/launch, from the EngineCall event), the host's part of the
// handshake.
func BenchmarkLaunch(b *testing.B) {
	b.Run("floor", func(b *testing.B) { launchFloor(b, newFloor(b)) })
	b.Run("init-only", func(b *testing.B) { launchFloor(b, newInitOnly(b)) })
	b.Run("vmre", func(b *testing.B) { launchVMRE(b) })
	b.Run("vmre-no-warm-up", func(b *testing.B) { launchVMRE(b, "-no-warm-up") })
}

// launchVMRE times launches of the minimal VM, run with args, to its first
// answer, one VM at a time.
func launchVMRE(b *testing.B, args ...string) {
	var initialize []time.Duration
	h := newVMRE(b, launcher.Config{Hooks: &launcher.Hooks{EngineCall: func(i launcher.EngineCallInfo) {
		if i.Procedure == runtimev1connect.RuntimeServiceInitializeProcedure {
			initialize = append(initialize, i.Elapsed) // launches are one at a time
		}
	}}})
	h.args = args
	defer func() { b.ReportMetric(median.Of(initialize), "initialize-ns/launch") }()
	for b.Loop() {
		rt, err := h.launch(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := h.stop(rt); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// launchFloor times f's starts, one plugin at a time.
func launchFloor(b *testing.B, f *floor) {
	for b.Loop() {
		cmd, err := f.start()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := f.stop(cmd); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkLaunchConcurrent starts 16 VMs at once, each from a goroutine of
// its own, until all have answered their first call.
func BenchmarkLaunchConcurrent(b *testing.B) {
	b.Run("floor", func(b *testing.B) { launchFloorConcurrent(b, concurrency) })
	b.Run("vmre", func(b *testing.B) {
		h := newVMRE(b, launcher.Config{})
		for b.Loop() {
			rts, err := all(concurrency, func(int) (*launcher.Runtime, error) { return h.launch(context.Background()) })
			b.StopTimer()
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
			b.StartTimer()
		}
	})
}

// launches64 is how many VMs BenchmarkLaunch64 starts at once: a node's start
// with 64 chains.
const launches64 = 64

// BenchmarkLaunch64 starts 64 minimal VMs at once, each from a goroutine of
// its own, until all have answered their first call, under a Launcher
// without a limit on concurrent launches (limit=none), with its default
// (launcher.Config.MaxConcurrentLaunches, 4 per CPU), and with a limit of
// 2. It reports how many launches failed per op (failed/op, handshake
// timeouts and others): a launch that fails is not retried, and the op
// goes on with the VMs that started. floor is 64 floor plugins started at
// once with plain os/exec.
func BenchmarkLaunch64(b *testing.B) {
	b.Run("floor", func(b *testing.B) { launchFloorConcurrent(b, launches64) })
	for _, c := range []struct {
		name  string
		limit int
	}{{"limit=none", -1}, {"limit=default", 0}, {"limit=2", 2}} {
		b.Run(c.name, func(b *testing.B) {
			h := newVMRE(b, launcher.Config{MaxConcurrentLaunches: c.limit})
			failed := 0
			for b.Loop() {
				rts, err := all(launches64, func(int) (*launcher.Runtime, error) { return h.launch(context.Background()) })
				b.StopTimer()
				failed += launches64 - len(rts)
				if err != nil {
					b.Logf("%d launches failed: %v", launches64-len(rts), err)
				}
				for _, rt := range rts {
					rt.Stop(context.Background())
				}
				for _, rt := range rts {
					if err := h.stop(rt); err != nil {
						b.Error(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(failed)/float64(b.N), "failed/op")
		})
	}
}

// launchFloorConcurrent times n floor plugins started at once, each from a
// goroutine of its own, until all have dialled back.
func launchFloorConcurrent(b *testing.B, n int) {
	f := newFloor(b)
	for b.Loop() {
		cmds, err := all(n, func(int) (*exec.Cmd, error) { return f.start() })
		b.StopTimer()
		for _, cmd := range cmds {
			if err := f.stop(cmd); err != nil {
				b.Error(err)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkStop is a cooperative VM's stop, from SIGTERM (Runtime.Stop for
// vmre) to the VM reaped (Done). The VM is launched, and settled (it has
// answered a call), outside the timed part. vmre-subreaper is vmre under a
// Subreaper, as in a node.
func BenchmarkStop(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		f := newFloor(b)
		for b.Loop() {
			b.StopTimer()
			cmd, err := f.start()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := f.stop(cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	stopVMRE := func(b *testing.B) {
		h := newVMRE(b, launcher.Config{})
		for b.Loop() {
			b.StopTimer()
			rt, err := h.launch(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := h.stop(rt); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("vmre", stopVMRE)
	// As a node stops a VM: under a Subreaper, which adopts what a VM
	// leaves, the stop does not read /proc for the VM's descendants first.
	b.Run("vmre-subreaper", func(b *testing.B) {
		sr, err := launcher.StartSubreaper(nil)
		if err != nil {
			b.Skip(err)
		}
		defer sr.Close()
		stopVMRE(b)
	})
}

// all runs f n times at once and waits for all of them. It returns every
// result that has no error, and the errors joined.
func all[T any](n int, f func(i int) (T, error)) ([]T, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []T
		errs []error
	)
	for i := range n {
		wg.Go(func() {
			v, err := f(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, v)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// floor launches the floor plugin with plain os/exec code.
type floor struct {
	path string
	args []string // before the address
	ln   *net.TCPListener
}

func newFloor(b *testing.B) *floor {
	return &floor{path: plugins(b).floor, ln: listen(b).(*net.TCPListener)}
}

// newInitOnly launches the minimal VM as a floor plugin.
func newInitOnly(b *testing.B) *floor {
	return &floor{path: plugins(b).minimal, args: []string{"-bench-init-only"}, ln: listen(b).(*net.TCPListener)}
}

// start execs a floor plugin and returns once a plugin has dialled back and
// its line has been read. Under concurrency that line may be another
// plugin's: once all starts have returned, all plugins are up.
func (f *floor) start() (*exec.Cmd, error) {
	cmd := exec.Command(f.path, append(f.args, f.ln.Addr().String())...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := f.readLine(); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return cmd, nil
}

func (f *floor) readLine() error {
	deadline := time.Now().Add(10 * time.Second)
	f.ln.SetDeadline(deadline)
	conn, err := f.ln.Accept()
	if err != nil {
		return fmt.Errorf("floor plugin did not dial back: %w", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(deadline)
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		return fmt.Errorf("floor plugin wrote no line: %w", err)
	}
	return nil
}

// stop sends SIGTERM and reaps the plugin.
func (f *floor) stop(cmd *exec.Cmd) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("floor plugin: %w", err)
	}
	return nil
}

// vmreHost launches the minimal VM with a Launcher.
type vmreHost struct {
	b    *testing.B
	l    *launcher.Launcher
	path string
	args []string // the VM's
}

func newVMRE(b *testing.B, cfg launcher.Config) *vmreHost {
	l, err := launcher.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return &vmreHost{b: b, l: l, path: plugins(b).minimal}
}

// launch launches the minimal VM and calls its /ping.
func (h *vmreHost) launch(ctx context.Context) (*launcher.Runtime, error) {
	return h.launchCmd(ctx, exec.Command(h.path, h.args...))
}

// launchCmd launches cmd, a minimal VM, and calls its /ping.
func (h *vmreHost) launchCmd(ctx context.Context, cmd *exec.Cmd) (*launcher.Runtime, error) {
	rt, err := h.l.Launch(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, rt.HTTPClient(), rt.Status().Addr); err != nil {
		h.stop(rt)
		return nil, err
	}
	return rt, nil
}

// ping calls GET /ping of the VM at addr with c, the runtime's client as a
// node would: a VM that has answered a call is settled, with all it holds
// on the host in place.
func ping(ctx context.Context, c *http.Client, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ping", nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /ping: %s", res.Status)
	}
	return nil
}

// launchSettled launches n minimal VMs at once and waits until each has
// answered a call.
func (h *vmreHost) launchSettled(n int) ([]*launcher.Runtime, error) {
	return all(n, func(int) (*launcher.Runtime, error) { return h.launch(context.Background()) })
}

// stop stops the VM and waits until it is reaped. A VM that did not exit 0
// before SIGKILL is an error, except one killed by the SIGTERM, which is
// logged: the launcher ends the lease before it sends SIGTERM, so a VM that
// has already returned from client.Serve when the signal comes dies of it,
// and one that has exited by then was never signalled (see
// docs/PERFORMANCE.md).
func (h *vmreHost) stop(rt *launcher.Runtime) error {
	rt.Stop(context.Background())
	<-rt.Done()
	exit, _ := rt.Exit()
	switch {
	case exit.Stage == launcher.StageKill:
	case exit.Success():
		return nil
	case exit.Stage == launcher.StageTerm && exit.Signal == syscall.SIGTERM.String():
		h.b.Logf("VM %d: %s: SIGTERM came after client.Serve had returned", rt.Status().Pid, exit)
		return nil
	}
	return fmt.Errorf("VM %d: %s", rt.Status().Pid, exit)
}
