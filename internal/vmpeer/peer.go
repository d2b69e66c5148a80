// Package vmpeer reaches a VM's own server whatever it speaks: gRPC over
// HTTP/2 without TLS (h2c), as connect-go, grpc-go and connect-node servers
// do, or the Connect protocol over HTTP/1.1, as a server written with any
// language's standard HTTP library can. A Transport learns whether the
// server speaks h2c from its first connection, which a launcher opens as
// soon as the VM has announced its address; a Peer decides the RPC protocol
// by trying on its first call, and remembers. The host's health probe and
// any later client of the same VM share those decisions
// (docs/VM-AUTHORS.md).
package vmpeer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
)

// Protocol is how the host speaks to a VM's server.
type Protocol int32

// Protocols, in the order a Peer tries them.
const (
	// Unknown: not decided yet.
	Unknown Protocol = iota
	// GRPC is gRPC over h2c (HTTP/2 with prior knowledge).
	GRPC
	// ConnectJSON is the Connect protocol with JSON bodies, over h2c or
	// HTTP/1.1, whichever the server speaks.
	ConnectJSON
	// ConnectProto is the Connect protocol with binary protobuf bodies, for
	// a server that answers JSON with 415.
	ConnectProto
)

var tryOrder = []Protocol{GRPC, ConnectJSON, ConnectProto}

// name names the protocol alone.
func (p Protocol) name() string {
	switch p {
	case GRPC:
		return "gRPC"
	case ConnectJSON:
		return "Connect (JSON)"
	case ConnectProto:
		return "Connect (proto)"
	}
	return "unknown"
}

// String names the protocol and the transport it usually runs on, for
// people.
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
	url    string
	client *http.Client
	http2  func(context.Context) (bool, error)
	own    *Transport // closed by Close, or nil
	proto  atomic.Int32
	mu     sync.Mutex // held while deciding
}

// New returns a Peer for the server at addr (host:port), with a Transport
// of its own that dials on the first call.
func New(addr string) *Peer {
	t := NewTransport(addr, nil)
	p := Over(addr, &http.Client{Transport: t}, t.HTTP2)
	p.own = t
	return p
}

// Over returns a Peer for the server at addr that makes its calls with c, a
// client of that server that the caller owns, such as a launched VM's;
// http2 tells whether the server speaks h2c, as Transport.HTTP2 does.
func Over(addr string, c *http.Client, http2 func(context.Context) (bool, error)) *Peer {
	return &Peer{url: "http://" + addr, client: c, http2: http2}
}

// URL is the base URL of the VM's server, for connect-go clients.
func (p *Peer) URL() string { return p.url }

// Protocol is the protocol the VM's server was found to speak, or Unknown
// before a call has decided it.
func (p *Peer) Protocol() Protocol { return Protocol(p.proto.Load()) }

// Describe names the protocol found and the transport it runs on, for
// people: "gRPC over h2c", "Connect (JSON) over HTTP/1.1", "Connect (JSON)
// over h2c"; "unknown" before a call has decided.
func (p *Peer) Describe() string {
	switch proto := p.Protocol(); proto {
	case Unknown, GRPC:
		return proto.String()
	default:
		return proto.name() + " over " + p.Transport()
	}
}

// Transport names the HTTP version the VM's server speaks: "h2c" or
// "HTTP/1.1", or "unknown" before a call has found out.
func (p *Peer) Transport() string {
	http2, err := p.http2(done)
	switch {
	case err != nil:
		return "unknown"
	case http2:
		return "h2c"
	}
	return "HTTP/1.1"
}

// done is a context that has ended, to ask what is known without waiting.
var done = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// HTTPClient is the HTTP client of the VM's server: h2c when the server
// speaks it, else HTTP/1.1.
func (p *Peer) HTTPClient() *http.Client { return p.client }

// Call runs call with an HTTP client and the connect-go client options of
// the VM's protocol, to build a client at p.URL() and make one call with it.
//
// The first Call decides the protocol: it tries gRPC when the server speaks
// h2c, then Connect with JSON, then Connect with protobuf, each over the
// transport the server speaks, and keeps the first that the server
// answered, whatever the answer (an error of the call itself is the VM's,
// not the protocol's). An HTTP 415 answer, the server's way of refusing a
// protocol, or no answer at all, moves on to the next. When no protocol got
// an answer, Call returns an error naming each one's failure, and the next
// Call tries again.
func (p *Peer) Call(ctx context.Context, call func(connect.HTTPClient, ...connect.ClientOption) error) error {
	if proto := p.Protocol(); proto != Unknown {
		return call(p.client, proto.options()...)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if proto := p.Protocol(); proto != Unknown {
		return call(p.client, proto.options()...)
	}
	order := tryOrder
	if http2, err := p.http2(ctx); err == nil && !http2 {
		order = order[1:] // gRPC needs HTTP/2
	}
	var errs []error
	for _, proto := range order {
		r := &recorder{client: p.client}
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

// Close closes the Peer's Transport when it is its own (New).
func (p *Peer) Close() {
	if p.own != nil {
		p.own.Close(nil)
	}
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
