// Package h2c makes the HTTP servers and clients that vmre uses on
// loopback: HTTP/1.1 and HTTP/2 without TLS (prior knowledge), from net/http
// alone.
package h2c

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Server limits.
const (
	ReadHeaderTimeout = 5 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10
)

// NewServer returns an http.Server for h that speaks HTTP/1.1 and h2c on
// the same listener, with header-read and idle timeouts and a cap on header
// size.
func NewServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// NewClient returns an HTTP client that speaks HTTP/2 without TLS (prior
// knowledge) to http:// URLs, as gRPC requires. It does not use proxies:
// its peers are on loopback. Call CloseIdleConnections when done with it.
func NewClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return newClient(&protocols)
}

// NewHTTP1Client returns an HTTP/1.1 client without proxies. An idle
// HTTP/1.1 connection costs its server one goroutine, and a call in flight
// two, where HTTP/2 needs three: the VM's long-lived lease uses it.
func NewHTTP1Client() *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return newClient(&protocols)
}

func newClient(protocols *http.Protocols) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Protocols:   protocols,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		// One connection per peer carries the calls of one launch.
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     IdleTimeout,
	}}
}

// ListenLoopback listens on a free port of 127.0.0.1 with plain TCP. Since
// Go 1.24 net.Listen makes MPTCP sockets on Linux; on loopback they bring
// nothing, and their probe and set-up cost each VM's launch ~60µs.
func ListenLoopback(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, "tcp", "127.0.0.1:0")
}
