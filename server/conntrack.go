package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// trackedListener is the listener of ServeTLS: it records how each of its
// connections ends, so that the end of a lease it carried can be told
// apart (vmSideEnd), and makes TCP give up on a link that stops
// acknowledging within the pings' time (setUserTimeout).
type trackedListener struct {
	net.Listener
	pings   Pings
	closing atomic.Bool // ServeTLS is shutting down
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	p := l.pings.withDefaults()
	setUserTimeout(c, p.Interval+p.Timeout)
	return &trackedConn{Conn: c, ln: l}, nil
}

// trackedConn records the first error of its reads, and whether the
// server closed it before any: a connection that the HTTP/2 server closes
// for an unanswered ping.
type trackedConn struct {
	net.Conn
	ln *trackedListener

	mu         sync.Mutex
	readErr    error
	closedHere bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		if c.readErr == nil && !c.closedHere {
			c.readErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.mu.Lock()
	if c.readErr == nil {
		c.closedHere = true
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// ending is the connection's first read error, and whether the server
// closed it before any.
func (c *trackedConn) ending() (readErr error, closedHere bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr, c.closedHere
}

// connKey keys a request's *trackedConn in its context.
type connKey struct{}

// connContext puts a TLS connection's *trackedConn in the context of its
// requests (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if t, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, t)
	}
	return ctx
}
