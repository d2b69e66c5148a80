// Package vmpeer reaches a VM's own server whatever it speaks: gRPC over
// HTTP/2 without TLS (h2c), as connect-go, grpc-go and connect-node servers
// do, or the Connect protocol over HTTP/1.1, as a server written with any
// language's standard HTTP library can. A Peer decides which by trying on
// its first call, and remembers; the host's health probe and any later
// client of the same VM share that decision (docs/VM-AUTHORS.md).
package vmpeer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/internal/h2c"
)

// Protocol is how the host speaks to a VM's server.
type Protocol int32

// Protocols, in the order a Peer tries them.
const (
	// Unknown: not decided yet.
	Unknown Protocol = iota
	// GRPC is gRPC over h2c (HTTP/2 with prior knowledge).
	GRPC
	// ConnectJSON is the Connect protocol with JSON bodies over HTTP/1.1.
	ConnectJSON
	// ConnectProto is the Connect protocol with binary protobuf bodies over
	// HTTP/1.1, for a server that answers JSON with 415.
	ConnectProto
)

var tryOrder = []Protocol{GRPC, ConnectJSON, ConnectProto}

// String names the protocol and its transport, for people.
func (p Protocol) String() string {
	switch p {
	case GRPC:
		return "gRPC over h2c"
	case ConnectJSON:
		return "Connect (JSON) over HTTP/1.1"
	case ConnectProto:
		return "Connect (proto) over HTTP/1.1"
	}
	return "unknown"
}

// Transport names the HTTP version the protocol runs on: "h2c" or "HTTP/1.1".
func (p Protocol) Transport() string {
	switch p {
	case GRPC:
		return "h2c"
	case ConnectJSON, ConnectProto:
		return "HTTP/1.1"
	}
	return "unknown"
}

// options are the connect-go client options of the protocol.
func (p Protocol) options() []connect.ClientOption {
	switch p {
	case GRPC:
		return []connect.ClientOption{connect.WithGRPC()}
	case ConnectJSON:
		return []connect.ClientOption{connect.WithCodec(enumJSON{})}
	}
	return nil
}

// Peer is one VM's server. It is safe for concurrent use; Close it when
// done.
type Peer struct {
	url   string
	h2    *http.Client
	h1    *http.Client
	proto atomic.Int32
	mu    sync.Mutex // held while deciding
}

// New returns a Peer for the server at addr (host:port).
func New(addr string) *Peer {
	return &Peer{url: "http://" + addr, h2: h2c.NewClient(), h1: h2c.NewHTTP1Client()}
}

// URL is the base URL of the VM's server, for connect-go clients.
func (p *Peer) URL() string { return p.url }

// Protocol is the protocol the VM's server was found to speak, or Unknown
// before a call has decided it.
func (p *Peer) Protocol() Protocol { return Protocol(p.proto.Load()) }

// HTTPClient is the HTTP client of the decided protocol's transport (the
// h2c one while undecided).
func (p *Peer) HTTPClient() *http.Client { return p.httpClient(p.Protocol()) }

func (p *Peer) httpClient(proto Protocol) *http.Client {
	if proto == ConnectJSON || proto == ConnectProto {
		return p.h1
	}
	return p.h2
}

// Call runs call with an HTTP client and the connect-go client options of
// the VM's protocol, to build a client at p.URL() and make one call with it.
//
// The first Call decides the protocol: it tries gRPC over h2c, then Connect
// with JSON over HTTP/1.1, then Connect with protobuf over HTTP/1.1, and
// keeps the first that the server answered, whatever the answer (an error
// of the call itself is the VM's, not the protocol's). An HTTP 415 answer,
// the server's way of refusing a protocol, or no answer at all, moves on to
// the next. When no protocol got an answer, Call returns an error naming
// each one's failure, and the next Call tries again.
func (p *Peer) Call(ctx context.Context, call func(connect.HTTPClient, ...connect.ClientOption) error) error {
	if proto := p.Protocol(); proto != Unknown {
		return call(p.httpClient(proto), proto.options()...)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if proto := p.Protocol(); proto != Unknown {
		return call(p.httpClient(proto), proto.options()...)
	}
	var errs []error
	for _, proto := range tryOrder {
		r := &recorder{client: p.httpClient(proto)}
		err := call(r, proto.options()...)
		if r.answered.Load() {
			p.proto.Store(int32(proto))
			return err
		}
		if err == nil { // the call made no request: it decides nothing
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", proto, err))
		if ctx.Err() != nil {
			break
		}
	}
	return &NoProtocolError{URL: p.url, Errs: errs}
}

// Close closes the idle connections of the Peer's clients.
func (p *Peer) Close() {
	p.h2.CloseIdleConnections()
	p.h1.CloseIdleConnections()
}

// NoProtocolError is a first Call to which the server answered in none of
// the protocols tried. Errs holds each protocol's failure, in order.
type NoProtocolError struct {
	URL  string
	Errs []error
}

func (e *NoProtocolError) Error() string {
	return fmt.Sprintf("the server at %s answers none of gRPC over h2c and Connect over HTTP/1.1: %v",
		e.URL, errors.Join(e.Errs...))
}

// Unwrap returns each protocol's failure.
func (e *NoProtocolError) Unwrap() []error { return e.Errs }

// recorder is an HTTP client that notes whether the server answered in the
// protocol asked: any response but 415 Unsupported Media Type.
type recorder struct {
	client   *http.Client
	answered atomic.Bool
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.client.Do(req)
	if err == nil && resp.StatusCode != http.StatusUnsupportedMediaType {
		r.answered.Store(true)
	}
	return resp, err
}
