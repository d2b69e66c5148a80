package client

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// conns follows the states of a server's connections (http.Server's
// ConnState), so that a shutdown need not wait for idle ones.
//
// http.Server.Shutdown closes idle HTTP/1 connections at once, but counts
// an HTTP/2 connection as active for its whole life: it sends a GOAWAY and
// waits for the client to close, which net/http's own HTTP/2 client does not
// do for an idle connection, so the server ends it only after a second
// (and Shutdown polls for that from 1 ms on). The host keeps such a
// connection to every VM. Closing the idle connections first, and waiting
// until the server has let go of them, lets Shutdown return at once.
type conns struct {
	mu      sync.Mutex
	state   map[net.Conn]http.ConnState
	changed chan struct{} // closed and replaced when a connection goes
}

func newConns() *conns {
	return &conns{state: map[net.Conn]http.ConnState{}, changed: make(chan struct{})}
}

// track is the server's ConnState hook. The HTTP/2 server reports its
// connections idle (no stream open) and active with the same net.Conn as
// the HTTP/1 server.
func (c *conns) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case http.StateClosed, http.StateHijacked:
		delete(c.state, conn)
		close(c.changed)
		c.changed = make(chan struct{})
	default:
		c.state[conn] = state
	}
}

// closeIdle closes the idle connections, and the new ones on which nothing
// was received yet (the host opens one to a VM the moment its handshake is
// accepted, and http.Server.Shutdown waits five seconds before it counts
// such a connection idle), and waits until the server has let go of them,
// or ctx ends.
func (c *conns) closeIdle(ctx context.Context) {
	c.mu.Lock()
	var idle []net.Conn
	for conn, state := range c.state {
		if state == http.StateIdle || state == http.StateNew {
			idle = append(idle, conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
	for {
		c.mu.Lock()
		left := false
		for _, conn := range idle {
			if _, ok := c.state[conn]; ok {
				left = true
				break
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if !left {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
