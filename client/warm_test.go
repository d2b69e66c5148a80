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
// h2c and one over HTTP/1.1 to ln's own address, then stops it. With warm,
// Serve runs with client.WithWarmUp, and serveAndCall waits for the
// warm-up's end before the requests, and fails the test unless both of its
// requests were answered; without, it fails the test if Serve warmed up.
func serveAndCall(t *testing.T, ln *watchedListener, warm bool) servedVM {
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
	warmed := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	opts := []client.Option{client.WithListener(ln), client.WithEngine(engineAddr, l.Token()),
		client.WithLogger(slog.New(rec)), client.WithOnReady(func(client.Ready) { close(ready) }),
		client.WithWarmUpDone(func(err error) { warmed <- err })}
	if warm {
		opts = append(opts, client.WithWarmUp())
	}
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
	if warm {
		if err := receive(t, warmed, "end of the warm-up"); err != nil {
			t.Fatalf("the warm-up: %v; want both of its requests answered", err)
		}
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
		t.Errorf("the VM's listener accepted %d connections; want the host's 2: the warm-up's are in memory", n)
	}
	select {
	case err := <-warmed:
		if !warm {
			t.Errorf("a VM without WithWarmUp warmed up (%v)", err)
		}
	default:
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

// TestWarmUpServesNothingNew: Serve's warm-up (WithWarmUp) serves two
// requests to the VM's own server (gRPC over h2c, Connect over HTTP/1.1),
// over connections in memory, not through its listener; its requests never
// reach the VM's handler, and the VM logs at info level just what it logs
// without the warm-up, which is off by default.
func TestWarmUpServesNothingNew(t *testing.T) {
	t.Parallel()
	warm := serveAndCall(t, newWatchedListener(t), true)
	cold := serveAndCall(t, newWatchedListener(t), false)
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

// TestWarmUpWithoutNetwork: a VM whose listener reports an address that
// the VM cannot reach itself (here 127.0.0.2, where only the host's side
// of things would route), as a sandboxed VM cannot reach its own port,
// announces it, is warmed all the same (the warm-up needs no network), and
// serves the host as ever.
func TestWarmUpWithoutNetwork(t *testing.T) {
	t.Parallel()
	ln := newWatchedListener(t)
	port := ln.Listener.Addr().(*net.TCPAddr).Port
	ln.addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port))); err == nil {
		c.Close()
		t.Skipf("something answers at 127.0.0.2:%d", port)
	}
	got := serveAndCall(t, ln, true)
	if !slices.Equal(got.requests, hostRequests) {
		t.Errorf("the VM's handler saw %q; want the host's %q", got.requests, hostRequests)
	}
}
