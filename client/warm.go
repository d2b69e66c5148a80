package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/grpchealth"
)

// WarmUpHeader marks the requests of Serve's warm-up (docs/VM-AUTHORS.md,
// "The host's first call"): Serve answers them itself, and the VM's handler
// never sees them.
const WarmUpHeader = "Vmre-Warm-Up"

// warmUpTimeout bounds the warm-up: a server that does not answer its own
// requests by then is left alone.
const warmUpTimeout = time.Second

// warmUp is Serve's warm-up of its own serving path. While the VM waits for
// the engine's answer to its handshake, it calls its own server the ways a
// host will: grpc.health.v1 Check with gRPC over h2c, and with the Connect
// protocol over HTTP/1.1. The first request a process serves runs code for
// the first time (net/http's HTTP/2 and HTTP/1 servers, connect-go's
// handlers, protobuf's marshalling): done then, that cost is spent while the
// VM waits anyway, and the host's first call finds the path warm.
//
// The requests are written by hand, a few hundred bytes each, so that the
// warm-up runs no client code of its own: only the server's path is warmed.
// They carry WarmUpHeader with a secret of this Serve call, and ServeHTTP
// answers them with a health service of its own: they never reach the VM's
// handler. A VM whose server it cannot reach (a listener on an address only
// the host can reach) is not warmed.
type warmUp struct {
	next   http.Handler
	health http.Handler // answers the warm-up's requests
	secret string
	// done is set once the warm-up has ended: requests go straight to next.
	done atomic.Bool

	once   sync.Once       // starts the warm-up, or marks it never started
	ended  chan struct{}   // closed when the warm-up's goroutine ends
	ctx    context.Context // the warm-up's, ended by stop
	cancel context.CancelFunc
}

// newWarmUp returns the warm-up of a server whose handler is next.
func newWarmUp(next http.Handler) *warmUp {
	var b [16]byte
	rand.Read(b[:])
	_, health := grpchealth.NewHandler(grpchealth.NewStaticChecker())
	ctx, cancel := context.WithCancel(context.Background())
	w := &warmUp{next: next, health: health, secret: hex.EncodeToString(b[:]), ended: make(chan struct{}), cancel: cancel}
	w.ctx = ctx
	return w
}

// start runs the warm-up of the server listening at addr on a goroutine of
// its own; only its first call does. What the warm-up did is logged at
// debug level: it changes nothing that the VM serves or logs otherwise.
func (w *warmUp) start(addr net.Addr, log *slog.Logger) {
	w.once.Do(func() {
		go func() {
			defer close(w.ended)
			defer w.done.Store(true)
			begin := time.Now()
			if err := w.run(w.ctx, addr); err != nil {
				log.Debug("warm-up skipped: the VM cannot call its own server", slog.String("addr", addr.String()), slog.Any("error", err))
				return
			}
			log.Debug("warm-up done", slog.Duration("elapsed", time.Since(begin)))
		}()
	})
}

// stop ends the warm-up, if it runs, and waits for it. A warm-up that has
// not started never will.
func (w *warmUp) stop() {
	w.once.Do(func() {
		w.done.Store(true)
		close(w.ended)
	})
	w.cancel()
	<-w.ended
}

// ServeHTTP answers the warm-up's requests, and hands every other to the
// VM's handler.
func (w *warmUp) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if !w.done.Load() {
		if v := req.Header.Get(WarmUpHeader); v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(w.secret)) == 1 {
			w.health.ServeHTTP(rw, req)
			return
		}
	}
	w.next.ServeHTTP(rw, req)
}

// healthPath is the path of grpc.health.v1 Check.
const healthPath = "/grpc.health.v1.Health/Check"

// run calls the server listening at addr, once per path, and returns
// the first error, or ctx's.
func (w *warmUp) run(ctx context.Context, addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("the server's listener is on %s, not TCP", addr.Network())
	}
	target := tcp.AddrPort()
	switch {
	case target.Addr().Is4() && target.Addr().IsUnspecified():
		target = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), target.Port())
	case target.Addr().IsUnspecified():
		target = netip.AddrPortFrom(netip.IPv6Loopback(), target.Port())
	}
	ctx, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	// gRPC over h2c first: a host's own client takes that path.
	for _, call := range []func(net.Conn) error{w.grpcH2C, w.connectHTTP1} {
		if err := w.call(ctx, target.String(), call); err != nil {
			return err
		}
	}
	return nil
}

// call runs one request of the warm-up on a connection of its own.
func (w *warmUp) call(ctx context.Context, addr string, call func(net.Conn) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	return call(conn)
}

// connectHTTP1 sends Check with the Connect protocol (binary protobuf: an
// empty request) over HTTP/1.1, and reads the answer to its end.
func (w *warmUp) connectHTTP1(conn net.Conn) error {
	req := "POST " + healthPath + " HTTP/1.1\r\nHost: vm\r\nContent-Type: application/proto\r\n" +
		"Connect-Protocol-Version: 1\r\n" + WarmUpHeader + ": " + w.secret + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return err
	}
	// The server closes the connection after its answer.
	res, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if status, _, _ := strings.Cut(string(res), "\r\n"); status != "HTTP/1.1 200 OK" {
		return fmt.Errorf("the server answered %q", status)
	}
	return nil
}

// HTTP/2 frame types and flags of the warm-up's exchange (RFC 9113).
const (
	h2Data, h2Headers, h2Settings, h2GoAway = 0x0, 0x1, 0x4, 0x7
	h2EndStream, h2Ack, h2EndHeaders        = 0x1, 0x1, 0x4
)

// grpcH2C sends Check with gRPC over HTTP/2 with prior knowledge, as a
// host's first call comes, and reads frames until the answer's end.
func (w *warmUp) grpcH2C(conn net.Conn) error {
	var b []byte
	b = append(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"...)
	b = appendFrame(b, h2Settings, 0, 0, nil)
	// The header block in HPACK without Huffman coding or indexing: the
	// static table's :method POST (3) and :scheme http (6), then literals.
	block := []byte{0x80 | 3, 0x80 | 6}
	block = appendLiteral(block, 4, ":path", healthPath) // :path is static entry 4
	block = appendLiteral(block, 1, ":authority", "vm")
	block = appendLiteral(block, 31, "content-type", "application/grpc")
	block = appendLiteral(block, 0, "te", "trailers")
	block = appendLiteral(block, 0, "vmre-warm-up", w.secret)
	b = appendFrame(b, h2Headers, h2EndHeaders, 1, block)
	// An empty CheckRequest, in gRPC's envelope: no compression, length 0.
	b = appendFrame(b, h2Data, h2EndStream, 1, make([]byte, 5))
	if _, err := conn.Write(b); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	var head [9]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return err
		}
		n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		typ, flags, stream := head[3], head[4], binary.BigEndian.Uint32(head[5:])&0x7fffffff
		if _, err := r.Discard(n); err != nil {
			return err
		}
		switch {
		case typ == h2Settings && flags&h2Ack == 0:
			if _, err := conn.Write(appendFrame(nil, h2Settings, h2Ack, 0, nil)); err != nil {
				return err
			}
		case typ == h2GoAway:
			return errors.New("the server sent GOAWAY")
		case stream == 1 && flags&h2EndStream != 0:
			return nil // the answer's trailers
		}
	}
}

// appendFrame appends an HTTP/2 frame.
func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// appendLiteral appends a header field "without indexing" (RFC 7541,
// 6.2.2): its name by its static table index, or as a literal when index is
// 0, then its value; the strings without Huffman coding. The warm-up's
// strings are shorter than 127 bytes and its indexes below 15+128.
func appendLiteral(b []byte, index int, name, value string) []byte {
	if index == 0 {
		b = append(b, 0, byte(len(name)))
		b = append(b, name...)
	} else if index < 15 {
		b = append(b, byte(index))
	} else {
		b = append(b, 15, byte(index-15))
	}
	b = append(b, byte(len(value)))
	return append(b, value...)
}
