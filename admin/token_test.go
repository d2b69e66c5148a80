package admin_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// noVMs is a supervisor of no VMs: these tests never get past the token.
type noVMs struct{}

func (noVMs) List() []supervise.VM                        { return nil }
func (noVMs) Get(string) (supervise.VM, bool)             { return supervise.VM{}, false }
func (noVMs) Stop(context.Context, string) (bool, error)  { return false, nil }
func (noVMs) Start(context.Context, string) (bool, error) { return false, nil }
func (noVMs) Restart(context.Context, string) error       { return nil }

// countingListener counts the bytes its connections read.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// serveAdmin serves an admin service with token through server.Serve, as
// a node does, and returns its URL and the count of bytes the server read.
func serveAdmin(t *testing.T, token string) (string, *atomic.Int64) {
	t.Helper()
	svc, err := admin.New(admin.Config{Supervisor: noVMs{}, Token: token, Logger: vmretest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	ln, err := h2c.ListenLoopback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	read := new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, countingListener{ln, read}, mux) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), read
}

// zeros is an endless body of zero bytes that counts what was taken of it.
type zeros struct{ taken atomic.Int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.taken.Add(int64(len(p)))
	return len(p), nil
}

// TestUnauthenticatedBodyIsNotRead: a 200 MB POST without the token is
// refused 401 from its headers; the server reads at most what net/http
// drains to keep the connection (256 KiB), not the body, and the client's
// write stops long before its end.
func TestUnauthenticatedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	url, read := serveAdmin(t, "the-admin-token")
	const size = 200 << 20
	var written int64
	for _, auth := range []string{"", "Bearer not-the-token"} {
		body := new(zeros)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			url+"/"+adminv1connect.AdminServiceName+"/ListVMs", io.LimitReader(body, size))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/proto")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		c := h2c.NewHTTP1Client()
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a POST with %q: %s; want 401 Unauthorized", auth, resp.Status)
			}
		} else if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe") {
			t.Errorf("a POST with %q: %v; want 401, or a write cut short by the server", auth, err)
		}
		c.CloseIdleConnections()
		written += body.taken.Load()
	}
	const most = 1 << 20
	if n := read.Load(); n > most {
		t.Errorf("the server read %d bytes of two refused 200 MB POSTs; want at most %d", n, most)
	}
	if n := written; n > 64<<20 {
		t.Errorf("the client wrote %d bytes of two refused 200 MB POSTs: the server read the body", n)
	}
	t.Logf("server read %d bytes, client wrote %d bytes of 2 × %d", read.Load(), written, size)
}

// TestRefusalsAre401Not429: refusals in a burst are each answered 401,
// however many come: their log is limited to 10 a second, the answers are
// not (no 429, no resource_exhausted).
func TestRefusalsAre401Not429(t *testing.T) {
	t.Parallel()
	url, _ := serveAdmin(t, "the-admin-token")
	c := vmretest.HTTP1Client(t)
	for i := range 100 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			url+"/"+adminv1connect.AdminServiceName+"/ListVMs", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer wrong-"+strings.Repeat("x", i%7))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), `"code":"unauthenticated"`) {
			t.Fatalf("refusal %d: %s %s; want 401 unauthenticated", i, resp.Status, b)
		}
	}
}
