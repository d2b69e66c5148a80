package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/tlspin"
)

// runRemoteVM is a remote VM's whole main, as a VM program writes it:
// client.Serve, and the exit code client.ExitCode gives its error.
func runRemoteVM([]string) int {
	err := client.Serve(context.Background(), http.NewServeMux(), client.WithShutdownTimeout(2*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return client.ExitCode(err)
}

// pingLog is what an engine saw of its connections' HTTP/2 frames: the
// time each PING a VM sent (not an acknowledgement) arrived, and whether a
// connection was closed by the VM while silenced.
type pingLog struct {
	mu      sync.Mutex
	pings   []time.Time
	closed  time.Time // when a silenced connection's VM closed it
	changed chan struct{}
	silent  atomic.Bool // the engine neither reads nor answers: a cut link
}

func newPingLog() *pingLog { return &pingLog{changed: make(chan struct{})} }

func (pl *pingLog) event(f func()) {
	pl.mu.Lock()
	f()
	close(pl.changed)
	pl.changed = make(chan struct{})
	pl.mu.Unlock()
}

// count returns how many pings the log holds.
func (pl *pingLog) count() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.pings)
}

// wait returns the log's pings and close time once done holds of them.
func (pl *pingLog) wait(t *testing.T, what string, done func(pings []time.Time, closed time.Time) bool) ([]time.Time, time.Time) {
	t.Helper()
	timeout := time.After(vmretest.WaitTimeout)
	for {
		pl.mu.Lock()
		pings, closed, changed := append([]time.Time(nil), pl.pings...), pl.closed, pl.changed
		pl.mu.Unlock()
		if done(pings, closed) {
			return pings, closed
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%s: not within %s (%d pings seen)", what, vmretest.WaitTimeout, len(pings))
		}
	}
}

// pingListener accepts TLS connections and hands their plaintext, HTTP/2
// with prior knowledge, to an h2c server, reading the frames the VM sends
// as they pass.
type pingListener struct {
	net.Listener
	config *tls.Config
	log    *pingLog
}

func (l *pingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pingConn{Conn: tls.Server(c, l.config), log: l.log}, nil
}

// pingConn is one connection of a pingListener.
type pingConn struct {
	net.Conn
	log     *pingLog
	preface int    // bytes of the client preface still to skip
	head    []byte // a frame header read in part
	skip    int    // bytes of a frame's payload still to skip
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Read reads the VM's bytes and notes its pings. Silenced, it keeps
// reading them (and noting pings) but gives the server none, until the
// VM closes the connection.
func (c *pingConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		c.frames(p[:n])
		if !c.log.silent.Load() {
			return n, err
		}
		if err != nil {
			c.log.event(func() { c.log.closed = time.Now() })
			return 0, err
		}
	}
}

// Write sends the server's bytes, or drops them when silenced.
func (c *pingConn) Write(p []byte) (int, error) {
	if c.log.silent.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// frames follows the frames of the VM's stream b continues.
func (c *pingConn) frames(b []byte) {
	if c.preface < len(http2Preface) {
		n := min(len(http2Preface)-c.preface, len(b))
		c.preface += n
		b = b[n:]
	}
	for len(b) > 0 {
		if c.skip > 0 {
			n := min(c.skip, len(b))
			c.skip -= n
			b = b[n:]
			continue
		}
		n := min(9-len(c.head), len(b))
		c.head = append(c.head, b[:n]...)
		b = b[n:]
		if len(c.head) < 9 {
			return
		}
		length := int(c.head[0])<<16 | int(c.head[1])<<8 | int(c.head[2])
		if typ, flags := c.head[3], c.head[4]; typ == 0x6 && flags&0x1 == 0 { // PING, not ACK
			c.log.event(func() { c.log.pings = append(c.log.pings, time.Now()) })
		}
		c.head, c.skip = c.head[:0], length
	}
}

// TestEnginePing: a remote VM pings a silent connection to its engine as
// often as VMRE_RUNTIME_ENGINE_PING says, and when the engine stops
// answering (a cut link), it gives up at its first unanswered ping, within
// the ping's time, and exits 75 for its orchestrator to start it again.
// The engine counts the pings it receives; its lease sends nothing of its
// own (a keep-alive of an hour), so the VM's pings are all there is.
func TestEnginePing(t *testing.T) {
	t.Parallel()
	const ping = 200 * time.Millisecond
	cert, err := tlscert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := server.New(server.Config{})
	t.Cleanup(e.Close)
	sessions := make(chan server.SessionEvent, 4)
	token := server.NewToken()
	en, err := e.Enroll(server.EnrollConfig{Name: "far", Token: token, Initializer: server.AcceptVersions("", vmre.ProtocolVersion),
		KeepAlive: time.Hour, OnSession: func(ev server.SessionEvent) { sessions <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.Close)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := newPingLog()
	ln := &pingListener{Listener: tcp, config: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}, log: pl}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, e.Handler()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	vm := startRemoteVM(t, vmre.EngineAddressKey+"="+tcp.Addr().String(), vmre.EngineTokenKey+"="+token,
		vmre.EngineCertKey+"="+tlspin.Fingerprint(cert.Certificate[0]), vmre.EnginePingKey+"="+ping.String(),
		client.ListenAddrKey+"=127.0.0.1:0")
	select {
	case ev := <-sessions:
		if !ev.Up {
			t.Fatalf("the VM's session: %+v; want its lease taken", ev)
		}
	case <-vm.exited:
		t.Fatalf("the VM exited (%v) before taking its lease:\n%s", vm.err, vm.stderr.String())
	case <-time.After(vmretest.WaitTimeout):
		t.Fatalf("the VM took no lease within %s", vmretest.WaitTimeout)
	}

	// The pings of a silent, healthy connection: one an interval. With
	// the default (5 s) there would be none in this window.
	const counted = 6
	pings, _ := pl.wait(t, fmt.Sprintf("%d pings", counted), func(p []time.Time, _ time.Time) bool { return len(p) >= counted })
	window := pings[counted-1].Sub(pings[0])
	mean := window / (counted - 1)
	t.Logf("%d pings in %s: one every %s (%s asked)", counted, window.Round(time.Millisecond), mean.Round(time.Millisecond), ping)
	if mean < ping/2 || mean > 10*ping {
		t.Errorf("the VM pinged every %s on average; want about %s (%s)", mean, ping, vmre.EnginePingKey)
	}

	// The link is cut: the engine goes silent. The VM's next ping goes
	// unanswered, and the VM closes the connection after its timeout
	// without pinging again.
	silenced := time.Now()
	pl.silent.Store(true)
	// Counted once silent: a ping counted after this went unanswered.
	before := pl.count()
	pings, closed := pl.wait(t, "the VM closing the silent connection", func(_ []time.Time, c time.Time) bool { return !c.IsZero() })
	if unanswered := len(pings) - before; unanswered > 1 {
		t.Errorf("the VM sent %d pings to a silent engine before it gave up; want at most one", unanswered)
	}
	last := pings[len(pings)-1]
	t.Logf("the VM gave up %s after the link was cut, %s after its last ping", closed.Sub(silenced).Round(time.Millisecond), closed.Sub(last).Round(time.Millisecond))
	if wait := closed.Sub(last); wait > 10*ping {
		t.Errorf("the VM waited %s for its ping's answer; want about %s", wait, ping)
	}
	if code := vm.exitCode(t); code != client.ExitRestart {
		t.Errorf("the VM of the cut link exited %d; want %d\n%s", code, client.ExitRestart, vm.stderr.String())
	}
}

// A remote VM whose ping or engine fingerprint is not valid exits 2,
// naming the variable and what it wants, before it dials the engine.
func TestRemoteVMBadEnvironment(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialed := make(chan struct{}, 1)
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case dialed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { tcp.Close() })
	good := tlspin.Fingerprint([]byte("a certificate"))
	for _, tc := range []struct {
		name, cert, ping string
		says             []string
	}{
		{"fingerprint abc", "abc", "", []string{vmre.EngineCertKey, "64 hex digits"}},
		{"fingerprint not hex", strings.Repeat("z", 64), "", []string{vmre.EngineCertKey, "want 64 of 0-9 and a-f"}},
		{"ping fast", good, "fast", []string{vmre.EnginePingKey + `="fast"`, "not a duration such as 5s"}},
		{"ping 0", good, "0", []string{vmre.EnginePingKey + `="0"`, "not a duration such as 5s"}},
		{"ping -1s", good, "-1s", []string{vmre.EnginePingKey + `="-1s"`, "not a duration such as 5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{vmre.EngineAddressKey + "=" + tcp.Addr().String(), vmre.EngineTokenKey + "=" + server.NewToken(),
				vmre.EngineCertKey + "=" + tc.cert, client.ListenAddrKey + "=127.0.0.1:0"}
			if tc.ping != "" {
				env = append(env, vmre.EnginePingKey+"="+tc.ping)
			}
			vm := startRemoteVM(t, env...)
			if code := vm.exitCode(t); code != client.ExitUsage {
				t.Errorf("exit %d; want %d\n%s", code, client.ExitUsage, vm.stderr.String())
			}
			for _, s := range tc.says {
				if !strings.Contains(vm.stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, vm.stderr.String())
				}
			}
		})
	}
	select {
	case <-dialed:
		t.Error("a VM with a variable that is not valid dialed the engine")
	default:
	}
}

// startRemoteVM runs runRemoteVM with env added to an environment cleaned
// of the host's variables.
func startRemoteVM(t *testing.T, env ...string) *vmProcess {
	t.Helper()
	return startCommand(t, vmretest.Command("remote-vm"), env...)
}
