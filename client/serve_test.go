package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
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
	case <-time.After(waitTimeout):
		t.Fatalf("Serve did not return within %v", waitTimeout)
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
	waitFor(t, v.handshake, "the handshake")
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
	waitFor(t, lw.granted, "the lease")
	getHello(t, v.addr)
	l.End()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v after the host ended the lease; want nil", err)
	}
	v.wantClosed(t)
}

// TestServeEngineWithoutLease: an engine that does not offer the lease
// does not stop the VM; it serves until its context ends.
func TestServeEngineWithoutLease(t *testing.T) {
	t.Parallel()
	asked := make(chan struct{})
	var once atomic.Bool
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, func(h http.Handler) http.Handler {
		h = withoutLease(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.URL.Path == "/vmre.runtime.v1.RuntimeService/Lease" && once.CompareAndSwap(false, true) {
				close(asked) // after the 404 has been written
			}
		})
	})
	l := vmretest.NewLaunch(t, e, 1, nil)
	ctx, cancel := context.WithCancel(t.Context())
	v := serveVM(t, ctx, client.WithEngine(engineAddr, l.Token()))
	waitFor(t, asked, "the lease request")
	getHello(t, v.addr)
	select {
	case err := <-v.done:
		t.Fatalf("Serve returned %v when the engine had no lease to offer; want it to keep serving", err)
	default:
	}
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
	waitFor(t, v.handshake, "the handshake")
	getHello(t, v.addr)
	l.End() // without a lease, the VM does not notice
	getHello(t, v.addr)
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
