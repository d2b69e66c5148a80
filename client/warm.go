package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/grpchealth"
)

// WarmUpHeader marks the requests of Serve's warm-up (docs/VM-AUTHORS.md,
// "The host's first call"). They come over connections in memory that only
// Serve makes, Serve answers them itself, and the VM's handler never sees
// them.
const WarmUpHeader = "Vmre-Warm-Up"

// warmUpTimeout bounds the warm-up: a server that does not answer its own
// requests by then is left alone.
const warmUpTimeout = time.Second

// warmUp is Serve's warm-up of its own serving path (WithWarmUp). While the
// VM waits for the engine's answer to its handshake, it calls its own
// server the ways a host will: grpc.health.v1 Check with gRPC over h2c,
// and with the Connect protocol over HTTP/1.1. The first request a process
// serves runs code for the first time (net/http's HTTP/2 and HTTP/1
// servers, connect-go's handlers, protobuf's marshalling): done then, that
// cost is spent while the VM waits anyway, and the host's first call finds
// the path warm.
//
// The requests go over connections in memory (net.Pipe), served by the
// VM's own http.Server from a listener of the warm-up's: no socket, nothing
// on the network, nothing for a sandbox to refuse. The requests are written
// by hand, a few hundred bytes each, so that the warm-up runs no client
// code of its own: only the server's path is warmed. ServeHTTP tells them
// by their connection and answers them with a health service of its own:
// they never reach the VM's handler.
type warmUp struct {
	next http.Handler
	ln   *pipeListener

	once   sync.Once       // starts the warm-up, or marks it never started
	ended  chan struct{}   // closed when the warm-up's goroutine ends
	ctx    context.Context // the warm-up's, ended by stop
	cancel context.CancelFunc

	// health answers the warm-up's requests, made by the warm-up's
	// goroutine before its first request.
	health http.Handler
}

// newWarmUp returns the warm-up of a server whose handler is next; start
// is given the server.
func newWarmUp(next http.Handler) *warmUp {
	ctx, cancel := context.WithCancel(context.Background())
	return &warmUp{next: next, ln: newPipeListener(), ended: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// start runs the warm-up of srv, whose handler is w, on a goroutine of its
// own; only its first call does. What the warm-up did is logged at debug
// level: it changes nothing that the VM serves or logs otherwise. done,
// when set, is told of the warm-up's end, on its goroutine.
func (w *warmUp) start(srv *http.Server, log *slog.Logger, done func(error)) {
	w.once.Do(func() {
		go func() {
			defer close(w.ended)
			begin := time.Now()
			err := w.run(w.ctx, srv)
			if err != nil {
				log.Debug("warm-up cut short", slog.Any("error", err))
			} else {
				log.Debug("warm-up done", slog.Duration("elapsed", time.Since(begin)))
			}
			if done != nil {
				done(err)
			}
		}()
	})
}

// stop ends the warm-up, if it runs, and waits for it. A warm-up that has
// not started never will.
func (w *warmUp) stop() {
	w.once.Do(func() { close(w.ended) })
	w.cancel()
	w.ln.Close()
	<-w.ended
}

// ServeHTTP answers the warm-up's requests, and hands every other to the
// VM's handler.
func (w *warmUp) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if _, ok := req.Context().Value(http.LocalAddrContextKey).(warmUpAddr); ok {
		w.health.ServeHTTP(rw, req)
		return
	}
	w.next.ServeHTTP(rw, req)
}

// healthPath is the path of grpc.health.v1 Check.
const healthPath = "/grpc.health.v1.Health/Check"

// run serves the warm-up's listener with srv, makes one request per path,
// and returns the first error, or ctx's.
func (w *warmUp) run(ctx context.Context, srv *http.Server) error {
	_, w.health = grpchealth.NewHandler(grpchealth.NewStaticChecker())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(w.ln) }()
	defer func() {
		w.ln.Close()
		<-served
	}()
	ctx, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	// gRPC over h2c first: a host's own client takes that path.
	for _, call := range []func(net.Conn) error{grpcH2C, connectHTTP1} {
		if err := w.call(ctx, call); err != nil {
			return err
		}
	}
	return nil
}

// call runs one request of the warm-up on a connection of its own.
func (w *warmUp) call(ctx context.Context, call func(net.Conn) error) error {
	conn, err := w.ln.dial(ctx)
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
func connectHTTP1(conn net.Conn) error {
	req := "POST " + healthPath + " HTTP/1.1\r\nHost: vm\r\nContent-Type: application/proto\r\n" +
		"Connect-Protocol-Version: 1\r\n" + WarmUpHeader + ": 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
func grpcH2C(conn net.Conn) error {
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
	block = appendLiteral(block, 0, strings.ToLower(WarmUpHeader), "1")
	b = appendFrame(b, h2Headers, h2EndHeaders, 1, block)
	// An empty CheckRequest, in gRPC's envelope: no compression, length 0.
	b = appendFrame(b, h2Data, h2EndStream, 1, make([]byte, 5))
	// A connection in memory delivers a write only as it is read: the
	// server's reader takes the frames one by one while its writer, on a
	// goroutine of its own, sends its SETTINGS.
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

// pipeListener is the warm-up's listener: connections in memory, made by
// its dial. Its connections' local address is a warmUpAddr, which no other
// listener gives, so that the server's handler tells their requests apart.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// dial returns the client's end of a new connection, once the server has
// accepted the other.
func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- warmUpConn{s}:
		return c, nil
	case <-l.closed:
		c.Close()
		s.Close()
		return nil, net.ErrClosed
	case <-ctx.Done():
		c.Close()
		s.Close()
		return nil, ctx.Err()
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return warmUpAddr{} }

// warmUpConn is the server's end of a connection of the warm-up.
type warmUpConn struct{ net.Conn }

func (warmUpConn) LocalAddr() net.Addr { return warmUpAddr{} }

// warmUpAddr is the address of the warm-up's listener and connections.
type warmUpAddr struct{}

func (warmUpAddr) Network() string { return "pipe" }
func (warmUpAddr) String() string  { return "warm-up" }
