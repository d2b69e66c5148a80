package vmpeer_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/vmre/vmre/internal/vmpeer"
	"github.com/vmre/vmre/internal/vmretest"
)

// countingListener counts the connections its server accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// serveProto serves, on ln, a handler that answers with the request's
// protocol: HTTP/1.1 and h2c, or HTTP/1.1 alone.
func serveProto(t *testing.T, ln net.Listener, h2 bool) {
	t.Helper()
	vmretest.ServeOn(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}), !h2)
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &countingListener{Listener: ln}
}

// canceled is a context that has ended: HTTP2 answers with it only what it
// knows already.
func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

func get(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	res, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A Transport given a connection made before the server served keeps it:
// the server's first bytes say it speaks h2c, and every request goes over
// that one connection.
func TestTransportWarmConnection(t *testing.T) {
	t.Parallel()
	ln := listenCounting(t)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := vmpeer.NewTransport(ln.Addr().String(), conn)
	defer tr.Close(nil)
	if _, err := tr.HTTP2(canceled(t)); err == nil {
		t.Fatal("the Transport knows the protocol before the server answered")
	}
	serveProto(t, ln, true) // the preface waited in the connection
	c := &http.Client{Transport: tr}
	for range 3 {
		if got := get(t, c, ln.Addr().String()); got != "HTTP/2.0" {
			t.Fatalf("request over %q; want HTTP/2.0", got)
		}
	}
	if http2, err := tr.HTTP2(canceled(t)); err != nil || !http2 {
		t.Errorf("HTTP2() = %v, %v; want h2c", http2, err)
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("the server accepted %d connections; want 1, the one given", n)
	}
}

// An HTTP/1-only server answers the HTTP/2 preface in HTTP/1: the Transport
// speaks HTTP/1.1 to it from then on.
func TestTransportFallsBackToHTTP1(t *testing.T) {
	t.Parallel()
	ln := listenCounting(t)
	serveProto(t, ln, false)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := vmpeer.NewTransport(ln.Addr().String(), conn)
	defer tr.Close(nil)
	c := &http.Client{Transport: tr}
	for range 3 {
		if got := get(t, c, ln.Addr().String()); got != "HTTP/1.1" {
			t.Fatalf("request over %q; want HTTP/1.1", got)
		}
	}
	if http2, err := tr.HTTP2(canceled(t)); err != nil || http2 {
		t.Errorf("HTTP2() = %v, %v; want HTTP/1.1", http2, err)
	}
	if n := ln.accepted.Load(); n != 2 {
		t.Errorf("the server accepted %d connections; want 2: the preface's and one kept alive", n)
	}
}

// Without a connection, the first request dials it.
func TestTransportDialsFirst(t *testing.T) {
	t.Parallel()
	ln := listenCounting(t)
	serveProto(t, ln, true)
	tr := vmpeer.NewTransport(ln.Addr().String(), nil)
	defer tr.Close(nil)
	if got := get(t, &http.Client{Transport: tr}, ln.Addr().String()); got != "HTTP/2.0" {
		t.Fatalf("request over %q; want HTTP/2.0", got)
	}
}

// Requests on a closed Transport fail with the cause Close was given.
func TestTransportClose(t *testing.T) {
	t.Parallel()
	ln := listenCounting(t)
	serveProto(t, ln, true)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := vmpeer.NewTransport(ln.Addr().String(), conn)
	c := &http.Client{Transport: tr}
	get(t, c, ln.Addr().String())
	gone := errors.New("the VM has exited")
	tr.Close(gone)
	tr.Close(nil) // idempotent
	if _, err := c.Get("http://" + ln.Addr().String() + "/"); !errors.Is(err, gone) {
		t.Errorf("request after Close: %v; want %v", err, gone)
	}
}
