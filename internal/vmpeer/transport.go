package vmpeer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/vmre/vmre/internal/h2c"
)

// dialTimeout bounds a dial of the VM's server.
const dialTimeout = 5 * time.Second

// ErrClosed is the error of a request on a closed Transport, unless Close
// named another.
var ErrClosed = errors.New("the client of the VM's server is closed")

// Pool holds the HTTP transports, and their pools of connections, that the
// Transports of many VMs share: a VM's Transport costs its first connection
// and little more. It is safe for concurrent use.
type Pool struct {
	h2 *http.Transport // h2c only
	h1 *http.Transport // HTTP/1.1 only
}

// NewPool returns a Pool. Close its idle connections when done with it.
func NewPool() *Pool {
	p := &Pool{
		h2: h2c.NewClient().Transport.(*http.Transport),
		h1: h2c.NewHTTP1Client().Transport.(*http.Transport),
	}
	p.h2.DialContext = dial
	p.h2.DisableCompression, p.h1.DisableCompression = true, true
	return p
}

// CloseIdleConnections closes the idle connections of every Transport's
// pools; not their first connections.
func (p *Pool) CloseIdleConnections() {
	p.h2.CloseIdleConnections()
	p.h1.CloseIdleConnections()
}

// firstConn is the context key of a connection made already, which dial
// hands to the Transport that opens its first connection.
type firstConn struct{}

// dial is the h2c transport's dial: the connection in ctx when there is
// one, else a new one.
func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c, ok := ctx.Value(firstConn{}).(net.Conn); ok {
		return c, nil
	}
	return (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, network, addr)
}

// Transport is an http.RoundTripper to one VM's server. It speaks HTTP/2
// without TLS (h2c) when the server does, else HTTP/1.1, and decides which
// on its first connection: it opens it with the HTTP/2 client preface, and
// an HTTP/2 server answers with a SETTINGS frame, where an HTTP/1-only server
// answers an error in HTTP/1 or closes the connection. The first requests
// over h2c go on that connection; more connections, from its Pool, as needed.
//
// It is safe for concurrent use. Close it when the VM is gone.
type Transport struct {
	addr string
	pool *Pool
	own  bool // Close closes the pool's idle connections: the pool is its own

	decided    chan struct{} // closed once the server's first bytes have said which
	decideOnce sync.Once
	http2      bool // valid once decided is closed

	closing  chan struct{} // closed by Close
	closeErr error         // valid once closing is closed

	mu        sync.Mutex
	first     *http.ClientConn // the first connection, once it is open
	opened    bool             // the first connection is open
	opening   chan struct{}    // closed when an attempt to open it ends; nil when none runs
	closeOnce sync.Once
}

// NewTransport returns a Transport for the server at addr (host:port), with
// a Pool of its own. conn, when not nil, is a connection to addr already
// made, which becomes the first: NewTransport sends the HTTP/2 client
// preface on it at once, so that the server has answered by the first
// request. Without conn, the first request dials it.
func NewTransport(addr string, conn net.Conn) *Transport {
	t := NewPool().Transport(addr, conn)
	t.own = true
	return t
}

// Transport returns a Transport for the server at addr whose further
// connections come from p; conn is as for NewTransport.
func (p *Pool) Transport(addr string, conn net.Conn) *Transport {
	t := &Transport{
		addr:    addr,
		pool:    p,
		decided: make(chan struct{}),
		closing: make(chan struct{}),
	}
	if conn != nil {
		t.opened = true
		t.open(context.Background(), conn)
	}
	return t
}

// open makes conn (or, when it is nil, a new connection) the first
// connection and sends the HTTP/2 client preface on it. It returns the
// dial's error.
func (t *Transport) open(ctx context.Context, conn net.Conn) error {
	if conn == nil {
		var err error
		if conn, err = (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "tcp", t.addr); err != nil {
			return err
		}
	}
	first := &sniffConn{Conn: conn, decide: t.decide}
	cc, err := t.pool.h2.NewClientConn(context.WithValue(ctx, firstConn{}, net.Conn(first)), "http", t.addr)
	if err != nil {
		t.decide(false) // the preface could not be written: no answer
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.closing:
		cc.Close()
	default:
		t.first = cc
	}
	return nil
}

// decide records what the server's first bytes said. The first decision
// stands.
func (t *Transport) decide(http2 bool) {
	decided := false
	t.decideOnce.Do(func() {
		t.http2, decided = http2, true
		close(t.decided)
	})
	if decided && !http2 {
		t.mu.Lock()
		cc := t.first
		t.first = nil
		t.mu.Unlock()
		if cc != nil {
			cc.Close() // an HTTP/1 server has answered the preface, or closed
		}
	}
}

// HTTP2 waits until the Transport knows whether the server speaks h2c, and
// reports it. It returns an error when ctx ends first, the Transport is
// closed, or the first connection cannot be dialled (the next call dials
// again).
func (t *Transport) HTTP2(ctx context.Context) (bool, error) {
	for {
		select {
		case <-t.decided:
			return t.http2, nil
		default:
		}
		t.mu.Lock()
		attempt := t.opening
		if attempt == nil && !t.opened {
			attempt = make(chan struct{})
			t.opening = attempt
			t.mu.Unlock()
			err := t.open(ctx, nil)
			t.mu.Lock()
			t.opening, t.opened = nil, err == nil
			close(attempt)
			t.mu.Unlock()
			if err != nil {
				return false, err
			}
			continue
		}
		t.mu.Unlock()
		// attempt is nil once the first connection is open: wait for its
		// answer; else for the attempt of another caller to end.
		select {
		case <-t.decided:
			return t.http2, nil
		case <-attempt:
		case <-t.closing:
			return false, t.closeErr
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// acceptEncodings are the headers in which HTTP, gRPC and Connect clients
// offer the compressions they accept.
var acceptEncodings = []string{"Accept-Encoding", "Grpc-Accept-Encoding", "Connect-Accept-Encoding"}

// RoundTrip sends req over h2c, on the first connection while it can take
// it, when the server speaks h2c, else over HTTP/1.1.
//
// It asks for answers without compression: it takes out of req the
// compressions its client offers (connect-go and grpc-go clients offer
// gzip). Between a host and a VM on one machine, compression costs both
// CPU and saves nothing; a connect-go server compresses every answer it
// may, and its first gzip writer costs a VM's first call about 0.4 ms.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for _, h := range acceptEncodings {
		if _, ok := req.Header[h]; ok {
			req = req.Clone(req.Context())
			for _, h := range acceptEncodings {
				delete(req.Header, h)
			}
			break
		}
	}
	http2, err := t.HTTP2(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	select {
	case <-t.closing:
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, t.closeErr
	default:
	}
	if !http2 {
		return t.pool.h1.RoundTrip(req)
	}
	// Reserved under t.mu: CloseIdleConnections, which counts a reservation
	// as a request in flight, then leaves the connection open for it.
	t.mu.Lock()
	cc := t.first
	reserved := cc != nil && cc.Reserve() == nil
	t.mu.Unlock()
	if reserved {
		return cc.RoundTrip(req)
	}
	return t.pool.h2.RoundTrip(req)
}

// CloseIdleConnections closes the first connection when it carries no
// request (http.Client.CloseIdleConnections calls it), and, when the Pool
// is the Transport's own, the pool's idle connections: a server shutting
// down need not wait for them. Later requests dial again.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	cc := t.first
	if cc != nil && cc.InFlight() == 0 {
		t.first = nil
	} else {
		cc = nil
	}
	t.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
	if t.own {
		t.pool.CloseIdleConnections()
	}
}

// Close closes the first connection, and the pool's idle connections when
// the Pool is the Transport's own, and fails its later requests with cause
// (ErrClosed when nil). Requests in flight on other connections end with
// them. Close is idempotent.
func (t *Transport) Close(cause error) {
	t.closeOnce.Do(func() {
		if cause == nil {
			cause = ErrClosed
		}
		t.mu.Lock()
		t.closeErr = cause
		close(t.closing)
		cc := t.first
		t.first = nil
		t.mu.Unlock()
		if cc != nil {
			cc.Close()
		}
		if t.own {
			t.pool.CloseIdleConnections()
		}
	})
}

// frameHeaderLen is the size of an HTTP/2 frame header: a 3-byte length, a
// type, flags and a 4-byte stream id.
const frameHeaderLen = 9

// isServerPreface reports whether h, a frame header, starts an HTTP/2
// server's preface: a SETTINGS frame (type 4) that is not an
// acknowledgment (flag 1), on stream 0.
func isServerPreface(h []byte) bool {
	return h[3] == 0x4 && h[4]&0x1 == 0 && h[5]&0x7f == 0 && h[6] == 0 && h[7] == 0 && h[8] == 0
}

// sniffConn tells, from the first bytes a server sends on it, whether the
// server speaks HTTP/2. It changes nothing it reads.
type sniffConn struct {
	net.Conn
	decide func(http2 bool)
	seen   []byte // the first bytes, until decided
	done   bool
}

// Read is called by one goroutine at a time: the HTTP/2 client's reader.
func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.done {
		return n, err
	}
	c.seen = append(c.seen, p[:min(n, frameHeaderLen-len(c.seen))]...)
	switch {
	case len(c.seen) == frameHeaderLen:
		c.finish(isServerPreface(c.seen))
	case err != nil || bytes.HasPrefix(c.seen, []byte("HTTP/")):
		c.finish(false)
	}
	return n, err
}

func (c *sniffConn) finish(http2 bool) {
	c.done, c.seen = true, nil
	c.decide(http2)
}
