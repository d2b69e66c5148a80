package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// vmHandler answers helloPath with "hello".
func vmHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(helloPath, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	return mux
}

// vm is client.Serve running in this process.
type vm struct {
	ln        *net.TCPListener
	addr      string        // its listener's host:port
	handshake chan struct{} // closed when Serve is ready (WithOnReady)
	done      chan error    // Serve's result
	exited    chan struct{} // closed once Serve has returned
}

// serveVM runs client.Serve in this process on a fresh loopback listener.
// A test ends Serve through ctx, the lease or a refusal; should it fail
// first, cleanup cancels Serve and waits for it.
func serveVM(t *testing.T, ctx context.Context, opts ...client.Option) *vm {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := &vm{
		ln:        ln.(*net.TCPListener),
		addr:      ln.Addr().String(),
		handshake: make(chan struct{}),
		done:      make(chan error, 1),
		exited:    make(chan struct{}),
	}
	ready := func(client.Ready) { close(v.handshake) }
	opts = append([]client.Option{client.WithListener(ln), client.WithLogger(vmretest.Logger(t)), client.WithOnReady(ready)}, opts...)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(v.exited)
		v.done <- client.Serve(ctx, vmHandler(), opts...)
	}()
	t.Cleanup(func() {
		cancel()
		<-v.exited
	})
	return v
}

// serveResult waits for Serve's result.
func serveResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("Serve did not return within %v", vmretest.WaitTimeout)
		return nil
	}
}

// getHello calls the VM's handler at addr.
func getHello(t *testing.T, addr string) {
	t.Helper()
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	res, err := hc.Get("http://" + addr + helloPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "hello" {
		t.Errorf("GET %s = %q; want hello", helloPath, body)
	}
}

// wantClosed fails the test unless Serve closed the VM's listener. It asks
// the listener itself rather than dialing its port, which another test's
// listener may have taken over since.
func (v *vm) wantClosed(t *testing.T) {
	t.Helper()
	if err := v.ln.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the VM's listener %s is still open after Serve returned (SetDeadline: %v)", v.addr, err)
	}
}

func TestServeUntilContextEnds(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	ctx, cancel := context.WithCancel(t.Context())
	v := serveVM(t, ctx, client.WithEngine(engineAddr, l.Token()))
	vmretest.WaitClosed(t, v.handshake, "the handshake")
	if got, _ := l.Result(); got != v.addr {
		t.Errorf("the VM announced %q; want its listener's %q", got, v.addr)
	}
	getHello(t, v.addr)
	cancel()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v after its context ended; want nil", err)
	}
	v.wantClosed(t)
}

func TestServeUntilLeaseEnds(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	lw := newLeaseWatch()
	l := vmretest.NewLaunch(t, e, 1, lw.onCall)
	v := serveVM(t, t.Context(), client.WithEngine(engineAddr, l.Token()))
	vmretest.WaitClosed(t, lw.granted, "the lease")
	getHello(t, v.addr)
	l.End()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v after the host ended the lease; want nil", err)
	}
	v.wantClosed(t)
}

// stillServingWindow is how long a test watches Serve not return after the
// moment it could have been told, wrongly, to stop. Nothing marks that
// Serve has decided to go on; a Serve that stopped would return within this
// window (its shutdown takes milliseconds), and a Serve that goes on never
// returns in it, so the window can only miss a wrong Serve on a very loaded
// machine, never fail a right one.
const stillServingWindow = 300 * time.Millisecond

// stillServing fails the test if Serve returns within stillServingWindow,
// then checks that the VM answers.
func (v *vm) stillServing(t *testing.T, why string) {
	t.Helper()
	select {
	case err := <-v.done:
		t.Fatalf("Serve returned %v %s; want it to keep serving", err, why)
	case <-time.After(stillServingWindow):
	}
	getHello(t, v.addr)
}

// TestServeEngineWithoutLease: an engine that does not offer the lease
// does not stop the VM; it serves until its context ends.
func TestServeEngineWithoutLease(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, withoutLease)
	l := vmretest.NewLaunch(t, e, 1, nil)
	ctx, cancel := context.WithCancel(t.Context())
	// The VM's own HTTP client tells when the VM has read the engine's
	// answer to its Lease: from then on, Serve acts on it.
	answered := make(chan struct{})
	hc := &http.Client{Transport: &leaseAnswerWatch{RoundTripper: &http.Transport{}, read: answered}}
	t.Cleanup(hc.CloseIdleConnections)
	v := serveVM(t, ctx, client.WithEngine(engineAddr, l.Token()), client.WithHTTPClient(hc))
	vmretest.WaitClosed(t, answered, "the VM's reading of the refused lease")
	v.stillServing(t, "when the engine had no lease to offer")
	cancel()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v; want nil", err)
	}
}

// TestServeWithoutLease: with WithoutLease the VM never asks for one.
func TestServeWithoutLease(t *testing.T) {
	t.Parallel()
	var leases atomic.Int32
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/vmre.runtime.v1.RuntimeService/Lease" {
				leases.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	l := vmretest.NewLaunch(t, e, 1, nil)
	ctx, cancel := context.WithCancel(t.Context())
	v := serveVM(t, ctx, client.WithEngine(engineAddr, l.Token()), client.WithoutLease())
	vmretest.WaitClosed(t, v.handshake, "the handshake")
	getHello(t, v.addr)
	l.End() // without a lease, the VM does not notice
	v.stillServing(t, "after the host ended a launch that held no lease")
	cancel()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v; want nil", err)
	}
	if n := leases.Load(); n != 0 {
		t.Errorf("the VM asked for %d leases; want none", n)
	}
}

// TestServeHandshakeRefused: Serve returns the handshake's error and
// closes its listener.
func TestServeHandshakeRefused(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	v := serveVM(t, t.Context(), client.WithEngine(engineAddr, l.Token()), client.WithProtocolVersion(7))
	err := serveResult(t, v.done)
	var mismatch *vmre.VersionMismatchError
	if !errors.Is(err, vmre.ErrHandshakeFailed) || !errors.As(err, &mismatch) || mismatch.VMVersion != 7 {
		t.Errorf("Serve = %v; want a handshake failure with a version mismatch (vm 7)", err)
	}
	v.wantClosed(t)
}

// TestServeNotPlugin: Serve without the host's variables returns
// ErrNotPlugin and closes the listener it was given. It sets the
// environment, so it does not run in parallel.
func TestServeNotPlugin(t *testing.T) {
	t.Setenv(vmre.EngineAddressKey, "")
	t.Setenv(vmre.EngineTokenKey, "")
	v := serveVM(t, t.Context())
	if err := serveResult(t, v.done); !errors.Is(err, client.ErrNotPlugin) {
		t.Errorf("Serve = %v; want ErrNotPlugin", err)
	}
	v.wantClosed(t)
}

// leaseAnswerWatch is the VM's HTTP transport in a test: it closes read
// once the VM has read the body of the answer to its first Lease.
type leaseAnswerWatch struct {
	http.RoundTripper
	read chan struct{}
	once sync.Once
}

func (w *leaseAnswerWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := w.RoundTripper.RoundTrip(req)
	if err != nil || req.URL.Path != runtimev1connect.RuntimeServiceLeaseProcedure {
		return res, err
	}
	res.Body = &closeWatch{ReadCloser: res.Body, closed: func() { w.once.Do(func() { close(w.read) }) }}
	return res, nil
}

type closeWatch struct {
	io.ReadCloser
	closed func()
}

func (c *closeWatch) Close() error {
	err := c.ReadCloser.Close()
	c.closed()
	return err
}
