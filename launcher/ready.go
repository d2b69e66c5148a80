package launcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmpeer"
	"github.com/vmre/vmre/server"
)

// reach is a launch's Initializer: the host's check of the VM's protocol
// version, then a connection to the address the VM announced, made before
// the engine answers. A VM that announces an address where nothing answers
// is refused (failed_precondition), and its launch fails with PhaseReady.
// The connection made becomes the first of the host's client of the VM
// (Runtime.HTTPClient); the HTTP/2 preface goes on it once the handshake
// has completed, off the VM's path.
type reach struct {
	vmre.Initializer
	timeout time.Duration

	unreachable chan error // the first failed dial

	mu sync.Mutex
	// initialized is closed once the launch has completed its handshake:
	// a later call is refused by the engine (already_exists), and reach
	// does not dial for it.
	initialized <-chan struct{}
	conns       map[string]net.Conn // by address; nil once taken
	dialing     string              // the address being dialled, or ""
	dialStart   time.Time
}

func newReach(versions vmre.Initializer, timeout time.Duration) *reach {
	return &reach{Initializer: versions, timeout: timeout, unreachable: make(chan error, 1), conns: map[string]net.Conn{}}
}

// setHandshake names the handshake of the launch, before the VM starts.
func (r *reach) setHandshake(hs server.Handshake) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.initialized = hs.Initialized()
}

func (r *reach) Initialize(ctx context.Context, version uint, addr string) error {
	if err := r.Initializer.Initialize(ctx, version, addr); err != nil {
		return err
	}
	r.mu.Lock()
	initialized, over := r.initialized, r.conns == nil
	r.mu.Unlock()
	select {
	case <-initialized:
		return nil // the engine refuses the call: already_exists
	default:
		if over {
			return nil // the launch has ended: not_found
		}
	}
	r.mu.Lock()
	r.dialing, r.dialStart = addr, time.Now()
	r.mu.Unlock()
	conn, err := (&net.Dialer{Timeout: r.timeout}).DialContext(ctx, "tcp", addr)
	r.mu.Lock()
	r.dialing = ""
	r.mu.Unlock()
	if err != nil {
		select {
		case r.unreachable <- fmt.Errorf("the VM announced %s, where nothing answers: %w", addr, err):
		default:
		}
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"the host cannot connect to %s, the address of this call (%w): listen on it before calling Initialize", addr, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		conn.Close() // the launch is over
		return nil
	}
	if old := r.conns[addr]; old != nil {
		old.Close()
	}
	r.conns[addr] = conn
	return nil
}

// notAccepted returns the error of a launch whose handshake timed out
// while the host was still connecting to the address the VM announced: the
// VM did call back, but nothing accepts on its listener, whose queue is
// full. It is nil when no such connection is under way.
func (r *reach) notAccepted() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dialing == "" {
		return nil
	}
	return &notAcceptedError{addr: r.dialing, waited: time.Since(r.dialStart)}
}

// notAcceptedError is why a launch failed whose VM called back with the
// address of a listener that accepts no connection.
type notAcceptedError struct {
	addr   string
	waited time.Duration
}

func (e *notAcceptedError) Error() string {
	return fmt.Sprintf("the VM called Initialize announcing %s, but the host's connection to it was not accepted in %s: the listener's queue is full",
		e.addr, e.waited.Round(time.Millisecond))
}

// take returns the connection to addr, or nil, and closes the others: the
// launch is over.
func (r *reach) take(addr string) net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn := r.conns[addr]
	for a, c := range r.conns {
		if a != addr {
			c.Close()
		}
	}
	r.conns = nil
	return conn
}

// errExited is the cause of a call on the client of a VM that has ended.
var errExited = fmt.Errorf("%w: the VM has exited", vmre.ErrProcessNotFound)

// HTTPClient is the host's client of the VM's server, for connect-go and
// grpc clients built against "http://"+Status().Addr. It speaks HTTP/2
// without TLS (h2c), as gRPC needs, when the VM's server does, and HTTP/1.1
// otherwise (HTTP2 says which). Its first connection is the one Launch made
// to the VM's address before the VM's handshake was answered, opened with
// the HTTP/2 preface at once, so that the first call finds it warm.
//
// The client is the Runtime's: once the VM has ended, its connections are
// closed and its calls fail with an error that matches
// vmre.ErrProcessNotFound. CloseIdleConnections closes its idle
// connections, the first one included; later calls dial new ones.
func (r *Runtime) HTTPClient() *http.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.client
}

// HTTP2 reports whether the VM's server speaks HTTP/2 without TLS (h2c),
// which gRPC needs. The VM's server says so with its first bytes on the
// connection Launch opened; HTTP2 waits for them until ctx ends.
func (r *Runtime) HTTP2(ctx context.Context) (bool, error) {
	r.mu.Lock()
	t := r.transport
	r.mu.Unlock()
	return t.HTTP2(ctx)
}

// openClient makes the host's client of the VM's server, at addr, from
// pool, with conn as its first connection. A VM that has ended already gets
// it closed.
func (r *Runtime) openClient(pool *vmpeer.Pool, addr string, conn net.Conn) {
	t := pool.Transport(addr, conn)
	r.mu.Lock()
	r.transport, r.client = t, &http.Client{Transport: t}
	closed := r.clientClosed
	r.mu.Unlock()
	if closed {
		t.Close(errExited)
	}
}
