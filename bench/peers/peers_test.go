package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/ava-labs/avalanchego/utils/logging"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/grpcutils"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm/runtime/subprocess"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"

	vmpb "github.com/ava-labs/avalanchego/proto/pb/vm"

	"github.com/vmre/vmre/bench/internal/median"
	"github.com/vmre/vmre/bench/peers/internal/pingplugin"
	"github.com/vmre/vmre/launcher"
)

// The plugins, built once per run by the first benchmark that needs them:
// the floor and vmre's minimal VM from the vmre module, the peers' from
// this one.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// pluginsKey names a directory that already holds the plugins (floorvm,
// minvm, avagovm, gopluginvm), for a compiled benchmark binary run outside
// the module.
const pluginsKey = "VMRE_BENCH_PLUGINS"

func pluginPath(b *testing.B, name string) string {
	b.Helper()
	buildOnce.Do(func() {
		if binDir = os.Getenv(pluginsKey); binDir != "" {
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "vmre-peers-"); buildErr != nil {
			return
		}
		out := binDir + string(filepath.Separator)
		for _, build := range []struct {
			dir, cgo string
			pkgs     []string
		}{
			{"../..", "0", []string{"./bench/internal/floorvm", "./bench/internal/minvm"}},
			{".", "0", []string{"./internal/gopluginvm"}},
			{".", "1", []string{"./internal/avagovm"}}, // BLS and zstd are cgo
		} {
			cmd := exec.Command("go", append([]string{"build", "-o", out}, build.pkgs...)...)
			cmd.Dir = build.dir
			cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED="+build.cgo)
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %v: %w\n%s", build.pkgs, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// TestMain removes the plugins this run built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" && os.Getenv(pluginsKey) == "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// host is one way of running a VM: it launches one until its handshake is
// done, as that runtime's node does.
type host interface {
	launch(ctx context.Context) (vm, error)
	close()
}

// vm is a launched VM.
type vm interface {
	// call makes the first call a node makes, the grpc.health.v1 Check of
	// the VM's server, with the client the runtime's node uses: it dials on
	// its first call if the launch did not.
	call(ctx context.Context) error
	// stop stops the VM as its node does, and returns once it is reaped.
	stop() error
}

// hosts are the runtimes compared, the floor first.
var hosts = []struct {
	name string
	new  func(b *testing.B) host
}{
	{"floor", newFloor},
	{"avalanchego", newAvalancheGo},
	{"go-plugin", newGoPlugin},
	{"vmre", newVMRE},
}

// concurrency is how many VMs the concurrent benchmark starts at once.
const concurrency = 16

// BenchmarkPeers runs each runtime through the same steps, in one run, so
// that their figures compare (docs/PERFORMANCE.md, "Peers"). For each of
// floor, avalanchego (AvalancheGo's rpcchainvm subprocess runtime),
// go-plugin (hashicorp/go-plugin over gRPC) and vmre:
//
//   - launch: exec until the handshake is done (Bootstrap returns,
//     Client.Client returns, Launcher.Launch returns; the floor's line is
//     read);
//   - first-rpc: the first call after the launch, grpc.health.v1 Check with
//     the client the runtime's node uses (the launch untimed);
//   - launch-rpc: both;
//   - concurrent: 16 launched at once, each from a goroutine, until all
//     have answered their first call (ns/op), then stopped at once as
//     their nodes stop them, until all are reaped (stopped-ns/op);
//   - idle: 16 launched and called once; the host's goroutines, fds and
//     live heap per VM, against before the launches.
//
// The floor has no RPC: its rows are launch, concurrent and idle.
func BenchmarkPeers(b *testing.B) {
	for _, hd := range hosts {
		b.Run(hd.name, func(b *testing.B) {
			h := hd.new(b)
			defer h.close()
			floor := hd.name == "floor"
			b.Run("launch", func(b *testing.B) { timed(b, h, true, false) })
			if !floor {
				b.Run("first-rpc", func(b *testing.B) { timed(b, h, false, true) })
				b.Run("launch-rpc", func(b *testing.B) { timed(b, h, true, true) })
			}
			b.Run("concurrent", func(b *testing.B) { concurrent(b, h, !floor) })
			b.Run("idle", func(b *testing.B) { idle(b, h, !floor) })
		})
	}
}

// timed times the launch, the first call, or both, per op.
func timed(b *testing.B, h host, timeLaunch, timeCall bool) {
	ctx := context.Background()
	for b.Loop() {
		if !timeLaunch {
			b.StopTimer()
		}
		v, err := h.launch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !timeCall {
			b.StopTimer()
		} else {
			b.StartTimer()
			err = v.call(ctx)
			b.StopTimer()
		}
		if serr := v.stop(); serr != nil {
			b.Fatal(serr)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// concurrent times 16 launches and first calls at once, and reports the
// median time to stop them all at once.
func concurrent(b *testing.B, h host, call bool) {
	var stops []time.Duration
	for b.Loop() {
		vms, err := all(concurrency, func() (vm, error) { return launchAndCall(h, call) })
		b.StopTimer()
		begin := time.Now()
		serr := stopAll(vms)
		stops = append(stops, time.Since(begin))
		if err := errors.Join(err, serr); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(median.Of(stops), "stopped-ns/op")
}

// idle reports the host's goroutines, fds and live heap per idle VM.
func idle(b *testing.B, h host, call bool) {
	var goroutines, fds, heap float64
	for b.Loop() {
		before := takeSnapshot()
		vms, err := all(concurrency, func() (vm, error) { return launchAndCall(h, call) })
		after := takeSnapshot()
		if err := errors.Join(err, stopAll(vms)); err != nil {
			b.Fatal(err)
		}
		goroutines += float64(after.goroutines-before.goroutines) / concurrency
		fds += float64(after.fds-before.fds) / concurrency
		heap += (float64(after.heap) - float64(before.heap)) / concurrency
	}
	b.ReportMetric(goroutines/float64(b.N), "goroutines/VM")
	b.ReportMetric(fds/float64(b.N), "fds/VM")
	b.ReportMetric(heap/float64(b.N), "heap-B/VM")
}

func launchAndCall(h host, call bool) (vm, error) {
	v, err := h.launch(context.Background())
	if err != nil || !call {
		return v, err
	}
	if err := v.call(context.Background()); err != nil {
		v.stop()
		return nil, err
	}
	return v, nil
}

// all runs f n times at once and returns the VMs that launched, and the
// errors joined.
func all(n int, f func() (vm, error)) ([]vm, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []vm
		errs []error
	)
	for range n {
		wg.Go(func() {
			v, err := f()
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

// stopAll stops the VMs at once and waits until all are reaped.
func stopAll(vms []vm) error {
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Go(func() { errs[i] = v.stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// snapshot is the host's goroutines, live heap after a full GC, and open
// file descriptors.
type snapshot struct {
	goroutines int
	heap       uint64
	fds        int
}

func takeSnapshot() snapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ents, _ := os.ReadDir("/proc/self/fd")
	return snapshot{goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc, fds: len(ents)}
}

// The floor: plain os/exec of a plugin that dials the host and writes a
// line (bench/internal/floorvm), until the host has read it.
type floorHost struct {
	path string
	ln   *net.TCPListener
}

func newFloor(b *testing.B) host {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return &floorHost{path: pluginPath(b, "floorvm"), ln: ln.(*net.TCPListener)}
}

func (f *floorHost) close() { f.ln.Close() }

type floorVM struct{ cmd *exec.Cmd }

// launch starts a floor plugin and returns once a plugin has dialled back
// and its line has been read. Under concurrency that line may be another
// plugin's: once all launches have returned, all plugins are up.
func (f *floorHost) launch(context.Context) (vm, error) {
	cmd := exec.Command(f.path, f.ln.Addr().String())
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &floorVM{cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	f.ln.SetDeadline(deadline)
	conn, err := f.ln.Accept()
	if err == nil {
		conn.SetReadDeadline(deadline)
		_, err = bufio.NewReader(conn).ReadString('\n')
		conn.Close()
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("floor plugin: %w", err)
	}
	return v, nil
}

func (*floorVM) call(context.Context) error { return nil }

func (v *floorVM) stop() error {
	v.cmd.Process.Signal(syscall.SIGTERM)
	return v.cmd.Wait()
}

// AvalancheGo: its node's VM factory (vms/rpcchainvm.factory.New): a gRPC
// listener for the runtime's engine, subprocess.Bootstrap until the VM's
// Initialize, then grpcutils.Dial of the VM's address (which dials on the
// first call). Its node stops a VM with the VM's Shutdown call, then the
// runtime's stopper (SIGTERM, and wait).
type avagoHost struct{ path string }

func newAvalancheGo(b *testing.B) host { return &avagoHost{path: pluginPath(b, "avagovm")} }

func (*avagoHost) close() {}

type avagoVM struct {
	conn    *grpc.ClientConn
	stopper interface{ Stop(context.Context) }
}

func (h *avagoHost) launch(ctx context.Context) (vm, error) {
	ln, err := grpcutils.NewListener()
	if err != nil {
		return nil, err
	}
	status, stopper, err := subprocess.Bootstrap(ctx, ln, subprocess.NewCmd(h.path), &subprocess.Config{
		Stdout: io.Discard, Stderr: io.Discard, HandshakeTimeout: 10 * time.Second, Log: logging.NoLog{},
	})
	if err != nil {
		return nil, err
	}
	conn, err := grpcutils.Dial(status.Addr)
	if err != nil {
		stopper.Stop(ctx)
		return nil, err
	}
	return &avagoVM{conn: conn, stopper: stopper}, nil
}

func (v *avagoVM) call(ctx context.Context) error { return healthCheck(ctx, v.conn, "") }

func (v *avagoVM) stop() error {
	ctx := context.Background()
	_, err := vmpb.NewVMClient(v.conn).Shutdown(ctx, &emptypb.Empty{})
	v.stopper.Stop(ctx)
	return errors.Join(err, v.conn.Close())
}

// healthCheck calls grpc.health.v1 Check for service over conn.
func healthCheck(ctx context.Context, conn *grpc.ClientConn, service string) error {
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err == nil && res.Status != healthpb.HealthCheckResponse_SERVING {
		err = fmt.Errorf("health: %v", res.Status)
	}
	return err
}

// go-plugin: plugin.NewClient with gRPC and Client(), which starts the
// plugin, reads its handshake line and connects; Kill stops it (go-plugin's
// controller Shutdown call, then the process's end).
type goPluginHost struct{ path string }

func newGoPlugin(b *testing.B) host { return &goPluginHost{path: pluginPath(b, "gopluginvm")} }

func (*goPluginHost) close() {}

type goPluginVM struct {
	client *plugin.Client
	conn   *grpc.ClientConn
}

func (h *goPluginHost) launch(context.Context) (vm, error) {
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pingplugin.Handshake,
		Plugins:          pingplugin.Plugins,
		Cmd:              exec.Command(h.path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, err
	}
	return &goPluginVM{client: c, conn: rpc.(*plugin.GRPCClient).Conn}, nil
}

func (v *goPluginVM) call(ctx context.Context) error {
	return healthCheck(ctx, v.conn, plugin.GRPCServiceName)
}

func (v *goPluginVM) stop() error {
	v.client.Kill()
	if v.client.Exited() {
		return nil
	}
	return errors.New("go-plugin: the plugin has not exited after Kill")
}

// vmre: Launcher.Launch of the minimal VM (bench/internal/minvm on
// client.Serve), and its Runtime's client, over gRPC as the others.
type vmreHost struct {
	l    *launcher.Launcher
	path string
}

func newVMRE(b *testing.B) host {
	l, err := launcher.New(launcher.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return &vmreHost{l: l, path: pluginPath(b, "minvm")}
}

func (h *vmreHost) close() { h.l.Close() }

type vmreVM struct{ rt *launcher.Runtime }

func (h *vmreHost) launch(ctx context.Context) (vm, error) {
	rt, err := h.l.Launch(ctx, exec.Command(h.path))
	if err != nil {
		return nil, err
	}
	return &vmreVM{rt: rt}, nil
}

func (v *vmreVM) call(ctx context.Context) error {
	res, err := grpchealth.NewClient(v.rt.HTTPClient(), "http://"+v.rt.Status().Addr, connect.WithGRPC()).
		Check(ctx, &grpchealth.CheckRequest{})
	if err == nil && res.Status != grpchealth.StatusServing {
		err = fmt.Errorf("health: %v", res.Status)
	}
	return err
}

func (v *vmreVM) stop() error {
	v.rt.Stop(context.Background())
	<-v.rt.Done()
	exit, _ := v.rt.Exit()
	if exit.Success() || exit.Stage == launcher.StageTerm && exit.Signal == syscall.SIGTERM.String() {
		return nil
	}
	return fmt.Errorf("vmre: %s", exit)
}
