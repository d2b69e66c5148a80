package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// watchedListener tells each connection it accepts on accepted, and each
// one the server has let go of on closed. addr, when set, is the address it
// reports, in place of its own.
type watchedListener struct {
	net.Listener
	addr     net.Addr
	accepted chan net.Conn
	closed   chan net.Conn
}

func newWatchedListener(t *testing.T) *watchedListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &watchedListener{Listener: ln, accepted: make(chan net.Conn, 16), closed: make(chan net.Conn, 16)}
}

func (l *watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: c, closed: l.closed}
	l.accepted <- w
	return w, nil
}

func (l *watchedListener) Addr() net.Addr {
	if l.addr != nil {
		return l.addr
	}
	return l.Listener.Addr()
}

type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan<- net.Conn
}

func (c *watchedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed <- c })
	return err
}

// servedVM is what a test of the warm-up saw of one Serve: the requests its
// handler got and the records it logged at info level and above.
type servedVM struct {
	requests []string
	info     []string
}

// serveAndCall runs Serve on ln until the test has made one request over
// h2c and one over HTTP/1.1 to ln's own address, then stops it. Before the
// requests, it waits for warmConns connections to have been accepted and
// let go of: the warm-up's.
func serveAndCall(t *testing.T, ln *watchedListener, warmConns int, opts ...client.Option) servedVM {
	t.Helper()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	var mu sync.Mutex
	var seen servedVM
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen.requests = append(seen.requests, r.Proto+" "+r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, "hello")
	})
	rec := vmretest.NewRecorder()
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	opts = append([]client.Option{client.WithListener(ln), client.WithEngine(engineAddr, l.Token()),
		client.WithLogger(slog.New(rec)), client.WithOnReady(func(client.Ready) { close(ready) })}, opts...)
	go func() { done <- client.Serve(ctx, h, opts...) }()
	stopped := false
	defer func() {
		if !stopped { // the test failed first
			cancel()
			<-done
		}
	}()
	vmretest.WaitClosed(t, ready, "the handshake")
	if got, _ := l.Result(); got != ln.Addr().String() {
		t.Errorf("the VM announced %s; want %s, its listener's address", got, ln.Addr())
	}
	for range warmConns {
		receive(t, ln.accepted, "a connection of the warm-up")
	}
	for range warmConns {
		receive(t, ln.closed, "the end of a connection of the warm-up")
	}
	// The host: the listener's own address, whatever it reports.
	url := "http://" + ln.Listener.Addr().String() + "/hello"
	for _, hc := range []*http.Client{vmretest.H2CClient(t), vmretest.HTTP1Client(t)} {
		res, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != "hello" {
			t.Errorf("GET %s = %q; want hello", url, body)
		}
		hc.CloseIdleConnections()
	}
	cancel()
	err := serveResult(t, done)
	stopped = true
	if err != nil {
		t.Errorf("Serve = %v; want nil", err)
	}
	for _, r := range rec.Records() {
		if r.Level >= slog.LevelInfo {
			seen.info = append(seen.info, r.Level.String()+" "+r.Message)
		}
	}
	if n := len(ln.accepted); n != 2 {
		t.Errorf("after the warm-up, the VM's listener accepted %d connections; want the host's 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	return seen
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("no %s within %v", what, vmretest.WaitTimeout)
		panic("unreachable")
	}
}

// hostRequests are the requests the VM's handler must see: the host's, and
// nothing of the warm-up.
var hostRequests = []string{"HTTP/2.0 GET /hello", "HTTP/1.1 GET /hello"}

// TestWarmUpServesNothingNew: Serve's warm-up makes two connections to the
// VM's own server (gRPC over h2c, Connect over HTTP/1.1) and closes them,
// but its requests never reach the VM's handler, and the VM logs at info
// level just what it logs without the warm-up.
func TestWarmUpServesNothingNew(t *testing.T) {
	t.Parallel()
	warm := serveAndCall(t, newWatchedListener(t), 2)
	cold := serveAndCall(t, newWatchedListener(t), 0, client.WithoutWarmUp())
	if !slices.Equal(warm.requests, hostRequests) {
		t.Errorf("the VM's handler saw %q with the warm-up; want only the host's %q", warm.requests, hostRequests)
	}
	if !slices.Equal(cold.requests, hostRequests) {
		t.Errorf("the VM's handler saw %q without the warm-up; want %q", cold.requests, hostRequests)
	}
	if !slices.Equal(warm.info, cold.info) || len(warm.info) == 0 {
		t.Errorf("the VM logged %q at info level with the warm-up, %q without; want the same", warm.info, cold.info)
	}
}

// TestWarmUpSkippedWhenUnreachable: a VM whose listener reports an address
// that the VM cannot reach itself (here 127.0.0.2, where only the host's
// side of things would route) announces it, is not warmed, and serves the
// host as ever.
func TestWarmUpSkippedWhenUnreachable(t *testing.T) {
	t.Parallel()
	ln := newWatchedListener(t)
	port := ln.Listener.Addr().(*net.TCPAddr).Port
	ln.addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port))); err == nil {
		c.Close()
		t.Skipf("something answers at 127.0.0.2:%d", port)
	}
	got := serveAndCall(t, ln, 0)
	if !slices.Equal(got.requests, hostRequests) {
		t.Errorf("the VM's handler saw %q; want the host's %q", got.requests, hostRequests)
	}
}
