package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/tlspin"
)

// enroll enrolls a VM "far" in e, telling evs of its sessions.
func enroll(t *testing.T, e *server.Engine, evs *sessions, edit func(*server.EnrollConfig)) (*server.Enrollment, string) {
	t.Helper()
	token := server.NewToken()
	cfg := server.EnrollConfig{Name: "far", Token: token, Initializer: server.AcceptVersions("", 1), OnSession: evs.add}
	if edit != nil {
		edit(&cfg)
	}
	en, err := e.Enroll(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.Close)
	return en, token
}

// TestEnrollmentRace: two processes enroll at once with one token, 50
// times. Exactly one Initialize is accepted; the other is refused before
// it is accepted, saying that another process holds the enrollment; and
// the session the node publishes is the winner's, address and
// certificate. Each process has a connection of its own, as two VMs do.
func TestEnrollmentRace(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	evs := newSessions()
	_, token := enroll(t, e, evs, nil)
	for trial := range 50 {
		type outcome struct {
			addr, sum string
			err       error
			lease     *lease
		}
		results := make([]outcome, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				c := runtimeClient(t, addr) // a connection of its own
				vmAddr, sum := fmt.Sprintf("10.0.%d.%d:9650", trial, i+1), strings.Repeat(fmt.Sprintf("%x", i+1), 64)
				results[i] = outcome{addr: vmAddr, sum: sum}
				<-start
				if _, err := callInitializeTLS(t, c, token, vmAddr, sum); err != nil {
					results[i].err = err
					return
				}
				results[i].lease, results[i].err = openLease(t, t.Context(), c, token)
			})
		}
		close(start)
		wg.Wait()
		var winner, loser *outcome
		for i := range results {
			if results[i].err == nil {
				winner = &results[i]
			} else {
				loser = &results[i]
			}
		}
		if winner == nil || loser == nil {
			t.Fatalf("trial %d: %v and %v; want one process accepted and one refused", trial, results[0].err, results[1].err)
		}
		if connect.CodeOf(loser.err) != connect.CodeAlreadyExists || !strings.Contains(loser.err.Error(), `another process holds VM "far"'s enrollment`) {
			t.Fatalf("trial %d: the second process got %v; want already_exists saying another process holds the enrollment", trial, loser.err)
		}
		up := evs.next(t)
		if !up.Up || up.Addr != winner.addr || up.CertSHA256 != winner.sum {
			t.Fatalf("trial %d: the node publishes %s %s; the process that holds the lease serves %s %s", trial, up.Addr, up.CertSHA256, winner.addr, winner.sum)
		}
		winner.lease.cancel()
		if down := evs.next(t); down.Up || down.Cause != server.EndVMShutdown || down.Addr != winner.addr {
			t.Fatalf("trial %d: the end %+v; want the winner's, a VM shutdown", trial, down)
		}
	}
}

// TestLeaseWait: a session that Initialize accepted holds the enrollment
// until it takes its lease; one that never does is replaced after
// LeaseWait, and its late lease is refused.
func TestLeaseWait(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	evs := newSessions()
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC).UnixNano())
	en, token := enroll(t, e, evs, func(cfg *server.EnrollConfig) { cfg.LeaseWait = 10 * time.Second })
	server.SetEnrollmentClock(en, func() time.Time { return time.Unix(0, now.Load()) })
	first, second := runtimeClient(t, addr), runtimeClient(t, addr)

	if _, err := callInitializeTLS(t, first, token, "10.0.0.1:9650", ""); err != nil {
		t.Fatal(err)
	}
	_, err := callInitializeTLS(t, second, token, "10.0.0.2:9650", "")
	wantCode(t, err, connect.CodeAlreadyExists)
	if !strings.Contains(err.Error(), "has 10s to take its lease") {
		t.Errorf("refusal %v; want it to say how long the first session has", err)
	}
	now.Add(int64(9 * time.Second))
	_, err = callInitializeTLS(t, second, token, "10.0.0.2:9650", "")
	wantCode(t, err, connect.CodeAlreadyExists)
	now.Add(int64(time.Second)) // LeaseWait has passed: a takeover
	if _, err := callInitializeTLS(t, second, token, "10.0.0.2:9650", ""); err != nil {
		t.Fatalf("after LeaseWait: %v", err)
	}
	ls, err := openLease(t, t.Context(), second, token)
	if err != nil {
		t.Fatal(err)
	}
	vmretest.WaitClosed(t, ls.first, "the second session's lease")
	if up := evs.next(t); up.Addr != "10.0.0.2:9650" {
		t.Errorf("the node publishes %s; want the second process's", up.Addr)
	}
	// The lease holds the enrollment however long it lasts.
	now.Add(int64(time.Hour))
	_, err = callInitializeTLS(t, first, token, "10.0.0.1:9650", "")
	wantCode(t, err, connect.CodeAlreadyExists)
	if !strings.Contains(err.Error(), "holds the lease since") {
		t.Errorf("refusal %v; want it to say the lease is held", err)
	}
}

// TestSessionEndCauses: how each end of a session reaches the VM (its
// lease's last word) and the node (the event's cause).
func TestSessionEndCauses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		end      func(*server.Engine, *server.Enrollment, *lease)
		cause    server.EndCause
		code     connect.Code // of the lease's end; 0: a clean end
		byNode   bool
		initCode connect.Code // of the next Initialize; 0: accepted
	}{
		{"operator stop", func(_ *server.Engine, en *server.Enrollment, _ *lease) { en.Admit(false) }, server.EndOperatorStop, 0, true, connect.CodeFailedPrecondition},
		{"operator restart", func(_ *server.Engine, en *server.Enrollment, _ *lease) { en.EndSession() }, server.EndOperatorRestart, connect.CodeAborted, true, 0},
		{"token rotated", func(_ *server.Engine, en *server.Enrollment, _ *lease) { en.Rotate(server.NewToken()) }, server.EndTokenRotated, connect.CodeAborted, true, connect.CodeUnauthenticated},
		{"node shutdown", func(_ *server.Engine, en *server.Enrollment, _ *lease) { en.Shutdown() }, server.EndNodeShutdown, connect.CodeAborted, true, connect.CodeUnavailable},
		{"engine closed", func(e *server.Engine, _ *server.Enrollment, _ *lease) { e.Close() }, server.EndNodeShutdown, connect.CodeAborted, true, connect.CodeAborted},
		{"removed", func(_ *server.Engine, en *server.Enrollment, _ *lease) { en.Close() }, server.EndRemoved, 0, true, connect.CodeUnauthenticated},
		{"VM shutdown", func(_ *server.Engine, _ *server.Enrollment, ls *lease) { ls.cancel() }, server.EndVMShutdown, connect.CodeCanceled, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, addr := vmretest.StartEngine(t, server.Config{}, nil)
			evs := newSessions()
			en, token := enroll(t, e, evs, nil)
			c := runtimeClient(t, addr)
			if _, err := callInitializeTLS(t, c, token, "10.0.0.1:9650", ""); err != nil {
				t.Fatal(err)
			}
			ls, err := openLease(t, t.Context(), c, token)
			if err != nil {
				t.Fatal(err)
			}
			evs.next(t)
			tc.end(e, en, ls)
			vmretest.WaitClosed(t, ls.done, "the lease's end")
			if got := connect.CodeOf(ls.err); (tc.code == 0 && ls.err != nil) || (tc.code != 0 && got != tc.code) {
				t.Errorf("the lease ended with %v; want code %v", ls.err, tc.code)
			}
			down := evs.next(t)
			if down.Up || down.Cause != tc.cause || down.Cause.ByNode() != tc.byNode || errors.Is(down.Err, server.ErrSessionEnded) != tc.byNode {
				t.Errorf("end event %+v (%v); want cause %v", down, down.Err, tc.cause)
			}
			if tc.cause == server.EndNodeShutdown && tc.initCode == connect.CodeAborted {
				return // the engine is closed: its handler refuses nothing more to test
			}
			_, err = callInitializeTLS(t, c, token, "10.0.0.1:9650", "")
			if tc.initCode == 0 && err != nil {
				t.Errorf("the next Initialize: %v; want it accepted", err)
			} else if tc.initCode != 0 {
				wantCode(t, err, tc.initCode)
			}
		})
	}
}

// TestCertificateInInitialize: a VM that sends its certificate has its
// fingerprint checked (or derived) and its public key's pin published;
// what is not a certificate of that fingerprint is refused.
func TestCertificateInInitialize(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	evs := newSessions()
	_, token := enroll(t, e, evs, nil)
	c := runtimeClient(t, addr)
	cert, err := tlscert.SelfSigned([]string{"10.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der := cert.Certificate[0]
	call := func(sum string, der []byte) error {
		req := connect.NewRequest(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "10.0.0.1:9650", CertSha256: sum, Certificate: der})
		req.Header().Set("Authorization", "Bearer "+token)
		_, err := c.Initialize(t.Context(), req)
		return err
	}
	wantCode(t, call(strings.Repeat("0", 64), der), connect.CodeInvalidArgument)
	wantCode(t, call("", []byte("not a certificate")), connect.CodeInvalidArgument)
	wantCode(t, call("", make([]byte, 9<<10)), connect.CodeInvalidArgument)
	if err := call("", der); err != nil { // the fingerprint derived from the certificate
		t.Fatal(err)
	}
	if _, err := openLease(t, t.Context(), c, token); err != nil {
		t.Fatal(err)
	}
	up := evs.next(t)
	if up.CertSHA256 != tlspin.Fingerprint(der) || up.CertSPKI != tlspin.PublicKeyPin(cert.Leaf) {
		t.Errorf("published %s %s; want %s %s", up.CertSHA256, up.CertSPKI, tlspin.Fingerprint(der), tlspin.PublicKeyPin(cert.Leaf))
	}
}

// blackhole is a TCP proxy on loopback whose link can be cut: once cut,
// it keeps reading both sides (so TCP acknowledges everything) and
// forwards nothing, as a link whose packets vanish past the first hop.
type blackhole struct {
	ln  net.Listener
	cut atomic.Bool
	wg  sync.WaitGroup
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := h2c.ListenLoopback(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	var conns sync.Map
	b.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			conns.Store(in, out)
			b.wg.Go(func() { b.pipe(out, in) })
			b.wg.Go(func() { b.pipe(in, out) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, v any) bool { k.(net.Conn).Close(); v.(net.Conn).Close(); return true })
		b.wg.Wait()
	})
	return b
}

// pipe copies src to dst until src ends, dropping what comes once cut.
func (b *blackhole) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				io.Copy(io.Discard, src)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestPingTimeoutCause: over ServeTLS, a lease whose link goes silent
// ends with EndPingTimeout within the pings' time.
func TestPingTimeoutCause(t *testing.T) {
	t.Parallel()
	cert, err := tlscert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := server.New(server.Config{})
	t.Cleanup(e.Close)
	ln, err := h2c.ListenLoopback(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	pings := server.Pings{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond}
	go func() { served <- server.ServeTLS(ctx, ln, e.Handler(), server.TLS{Certificate: cert, Pings: pings}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	evs := newSessions()
	_, token := enroll(t, e, evs, func(cfg *server.EnrollConfig) { cfg.KeepAlive = time.Hour })
	proxy := newBlackhole(t, ln.Addr().String())

	// The VM's client pings too seldom to notice first.
	hc, err := tlspin.NewClient(tlspin.Fingerprint(cert.Certificate[0]), tlspin.Pings{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	c := runtimev1connect.NewRuntimeServiceClient(hc, "https://"+proxy.ln.Addr().String(), connect.WithGRPC())
	if _, err := callInitializeTLS(t, c, token, "10.0.0.1:9650", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := openLease(t, t.Context(), c, token); err != nil {
		t.Fatal(err)
	}
	evs.next(t)
	cut := time.Now()
	proxy.cut.Store(true)
	down := evs.next(t)
	if down.Cause != server.EndPingTimeout || !strings.Contains(down.Err.Error(), "ping timeout") {
		t.Errorf("end %v (%v); want a ping timeout", down.Cause, down.Err)
	}
	t.Logf("a silent link ended the lease in %s (pings %s + %s)", time.Since(cut).Round(time.Millisecond), pings.Interval, pings.Timeout)
}
