package launcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// whoamiVM serves, on client.Serve, the protocol and the remote address of
// each request: which connection of the host's client carried it.
func whoamiVM() int {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.RemoteAddr)
	})
	if err := client.Serve(context.Background(), h, client.WithLogger(logger)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// http1VM serves HTTP/1.1 only, as a VM written with another language's
// standard library does, and answers with the request's protocol.
func http1VM() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	if _, err := client.Initialize(context.Background(), ln.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-term
	srv.Close()
	return 0
}

// unreachableVM announces an address where nothing listens.
func unreachableVM() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := client.Initialize(context.Background(), addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// get makes a GET of the VM's path with the runtime's client and returns
// the body.
func get(t *testing.T, rt *launcher.Runtime, path string) (string, error) {
	t.Helper()
	res, err := rt.HTTPClient().Get("http://" + rt.Status().Addr + path)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// A launched VM's client speaks h2c to a server that does, and its calls
// share the connection Launch made; once the VM is gone, calls fail with
// ErrProcessNotFound.
func TestRuntimeHTTPClient(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "whoami")
	if http2, err := rt.HTTP2(t.Context()); err != nil || !http2 {
		t.Fatalf("HTTP2() = %v, %v; want h2c", http2, err)
	}
	var first string
	for i := range 3 {
		got, err := get(t, rt, "/")
		if err != nil {
			t.Fatal(err)
		}
		proto, remote, _ := strings.Cut(got, " ")
		if proto != "HTTP/2.0" {
			t.Errorf("call %d over %s; want HTTP/2.0", i, proto)
		}
		if i == 0 {
			first = remote
		} else if remote != first {
			t.Errorf("call %d came from %s, the first from %s; want one connection", i, remote, first)
		}
	}
	rt.Stop(context.Background())
	waitDone(t, rt)
	if _, err := get(t, rt, "/"); !errors.Is(err, vmre.ErrProcessNotFound) {
		t.Errorf("call after the VM's end: %v; want ErrProcessNotFound", err)
	}
}

// A VM whose server speaks only HTTP/1.1 gets a client that speaks it.
func TestRuntimeHTTPClientHTTP1(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{})
	rt := mustLaunch(t, l, "http1")
	if http2, err := rt.HTTP2(t.Context()); err != nil || http2 {
		t.Fatalf("HTTP2() = %v, %v; want HTTP/1.1", http2, err)
	}
	for range 2 {
		if got, err := get(t, rt, "/"); err != nil || got != "HTTP/1.1" {
			t.Fatalf("GET: %q, %v; want HTTP/1.1", got, err)
		}
	}
	rt.Stop(context.Background())
	waitDone(t, rt)
}

// An rpcchainvm plugin serves gRPC: its client speaks h2c, and calls its
// vm.VM service.
func TestRuntimeHTTPClientLegacy(t *testing.T) {
	t.Parallel()
	l := newLauncher(t, launcher.Config{Legacy: true})
	rt := mustLaunch(t, l, "legacy-stubborn")
	if http2, err := rt.HTTP2(t.Context()); err != nil || !http2 {
		t.Fatalf("HTTP2() = %v, %v; want h2c", http2, err)
	}
	shutdown := connect.NewClient[emptypb.Empty, emptypb.Empty](rt.HTTPClient(),
		"http://"+rt.Status().Addr+"/vm.VM/Shutdown", connect.WithGRPC())
	if _, err := shutdown.CallUnary(t.Context(), connect.NewRequest(&emptypb.Empty{})); err != nil {
		t.Fatal(err)
	}
	// A stubborn plugin stops on its Shutdown call alone.
	if exit := waitDone(t, rt); !exit.Success() || exit.Stage != launcher.StageNone {
		t.Errorf("exit = %v; want code 0, on its own after Shutdown", exit)
	}
}

// A VM that announces an address where nothing listens fails its launch,
// in the ready phase, and is stopped.
func TestLaunchUnreachableAddress(t *testing.T) {
	t.Parallel()
	l, events := hooksOnly(t, launcher.Config{})
	_, err := l.Launch(t.Context(), vmretest.Command("unreachable"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseReady {
		t.Fatalf("err = %v; want a LaunchError of the ready phase", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Errorf("err = %v; want it to match ECONNREFUSED and ErrHandshakeFailed", err)
	}
	if !strings.HasPrefix(err.Error(), "handshake failed: the VM announced 127.0.0.1:") ||
		!strings.Contains(err.Error(), "where nothing answers") {
		t.Errorf("error text %q", err)
	}
	if lerr.Pid == 0 || !vmretest.ProcessGone(lerr.Pid) {
		t.Errorf("the VM (pid %d) was not stopped and reaped", lerr.Pid)
	}
	for _, ev := range events.List() {
		if c, ok := ev.Info.(launcher.EngineCallInfo); ok && c.Code() != connect.CodeFailedPrecondition {
			t.Errorf("EngineCall %+v; want failed_precondition", c)
		}
	}
}

// TestLaunchListenerQueueFull: a VM that calls back with the address of a
// listener whose queue is full (it accepts nothing) makes the host wait on
// its connection until the handshake timeout; the launch fails saying the
// VM called and its listener did not accept, not that it never called.
func TestLaunchListenerQueueFull(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	l, events := hooksOnly(t, launcher.Config{HandshakeTimeout: timeout})
	_, err := l.Launch(t.Context(), vmretest.Command("fullqueue"))
	var lerr *launcher.LaunchError
	if !errors.As(err, &lerr) || lerr.Phase != launcher.PhaseReady {
		t.Fatalf("err = %v; want a LaunchError of the ready phase", err)
	}
	if errors.Is(err, vmre.ErrHandshakeTimeout) || !errors.Is(err, vmre.ErrHandshakeFailed) {
		t.Errorf("err = %v; want ErrHandshakeFailed, and not ErrHandshakeTimeout", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "the VM called Initialize announcing 127.0.0.1:") ||
		!strings.Contains(msg, "was not accepted in") || !strings.Contains(msg, "queue is full") ||
		strings.Contains(msg, "did not call back") {
		t.Errorf("error text %q", msg)
	}
	if lerr.Pid == 0 || !vmretest.ProcessGone(lerr.Pid) {
		t.Errorf("the VM (pid %d) was not stopped and reaped", lerr.Pid)
	}
	for _, ev := range events.List() {
		if ev.Kind == vmretest.Handshake {
			t.Errorf("a handshake completed: %+v", ev.Info)
		}
	}
}
