package client_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

const vmAddr = "127.0.0.1:40000"

// transport is one way for a VM to call the engine.
type transport int

const (
	defaultTransport transport = iota // no WithHTTPClient: Initialize picks
	h2cTransport
	http1Transport
)

// transports are the engine clients a VM may use: each protocol with the
// default HTTP client, and over each HTTP version it works with (gRPC
// needs HTTP/2). wantHTTP is the HTTP version the engine must see.
var transports = []struct {
	name      string
	protocol  client.Protocol
	transport transport
	wantHTTP  string
}{
	{"connect/default", client.ProtocolConnect, defaultTransport, "HTTP/1.1"},
	{"connect/h2c", client.ProtocolConnect, h2cTransport, "HTTP/2.0"},
	{"connect/http1.1", client.ProtocolConnect, http1Transport, "HTTP/1.1"},
	{"grpc/default", client.ProtocolGRPC, defaultTransport, "HTTP/2.0"},
	{"grpc/h2c", client.ProtocolGRPC, h2cTransport, "HTTP/2.0"},
	{"grpcweb/default", client.ProtocolGRPCWeb, defaultTransport, "HTTP/1.1"},
	{"grpcweb/h2c", client.ProtocolGRPCWeb, h2cTransport, "HTTP/2.0"},
	{"grpcweb/http1.1", client.ProtocolGRPCWeb, http1Transport, "HTTP/1.1"},
}

// transportOptions returns the options selecting a protocol and transport.
// The HTTP client, if any, is closed with the test.
func transportOptions(t *testing.T, protocol client.Protocol, tr transport) []client.Option {
	opts := []client.Option{client.WithProtocol(protocol)}
	switch tr {
	case h2cTransport:
		return append(opts, client.WithHTTPClient(vmretest.H2CClient(t)))
	case http1Transport:
		return append(opts, client.WithHTTPClient(vmretest.HTTP1Client(t)))
	}
	return opts
}

// protoLog records the HTTP version of each engine request, by the bearer
// token it carried.
type protoLog struct{ m sync.Map }

func (pl *protoLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pl.m.Store(r.Header.Get("Authorization"), r.Proto)
		h.ServeHTTP(w, r)
	})
}

// of returns the HTTP version of the last request with token.
func (pl *protoLog) of(token string) string {
	v, _ := pl.m.Load("Bearer " + token)
	s, _ := v.(string)
	return s
}

func TestInitialize(t *testing.T) {
	t.Parallel()
	var protos protoLog
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, protos.wrap)
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			// The cases share the engine, which refuses an address another
			// VM of it serves: each announces its own.
			vmAddr := "127.0.0.1:" + strconv.Itoa(40001+i)
			l := vmretest.NewLaunch(t, e, 1, nil)
			opts := append(transportOptions(t, tr.protocol, tr.transport), client.WithEngine(engineAddr, l.Token()))
			host, err := client.Initialize(t.Context(), vmAddr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := protos.of(l.Token()); got != tr.wantHTTP {
				t.Errorf("the engine got the call over %s; want %s", got, tr.wantHTTP)
			}
			if *host != (client.Host{Name: "vmre", ProtocolVersion: 1}) {
				t.Errorf("host %+v; want vmre, version 1", *host)
			}
			vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")
			if addr, _ := l.Result(); addr != vmAddr {
				t.Errorf("the host got addr %q; want %q", addr, vmAddr)
			}
		})
	}
}

// TestInitializeVersionMismatch checks the error a VM gets for a version
// the host refuses, over each protocol: the ProtocolVersionMismatch detail
// becomes a *vmre.VersionMismatchError.
func TestInitializeVersionMismatch(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			l := vmretest.NewLaunch(t, e, 1, nil)
			opts := append(transportOptions(t, tr.protocol, tr.transport),
				client.WithEngine(engineAddr, l.Token()), client.WithProtocolVersion(2))
			_, err := client.Initialize(t.Context(), vmAddr, opts...)
			if !errors.Is(err, vmre.ErrProtocolVersionMismatch) || !errors.Is(err, vmre.ErrHandshakeFailed) {
				t.Fatalf("%v; want an error wrapping ErrProtocolVersionMismatch and ErrHandshakeFailed", err)
			}
			var mismatch *vmre.VersionMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("%v is not a *vmre.VersionMismatchError", err)
			}
			if *mismatch != (vmre.VersionMismatchError{HostName: "vmre", HostVersion: 1, VMVersion: 2}) {
				t.Errorf("mismatch %+v; want host vmre, host version 1, vm version 2", *mismatch)
			}
			if want := "handshake failed: protocol version mismatch vmre: 1 vm: 2"; err.Error() != want {
				t.Errorf("error %q; want %q", err, want)
			}
			if strings.Contains(mismatch.Hint(), "older") {
				t.Errorf("hint %q: the VM is newer than the host", mismatch.Hint())
			}
		})
	}
}

// TestInitializeRefused checks that other refusals keep the engine's code
// reachable through the wrapping, and do not claim a version mismatch.
func TestInitializeRefused(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	cases := []struct {
		name  string
		token string
		addr  string
		want  connect.Code
	}{
		{"wrong token", strings.Repeat("0", 64), vmAddr, connect.CodeUnauthenticated},
		{"non-loopback addr", l.Token(), "10.1.2.3:80", connect.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Initialize(t.Context(), tc.addr, client.WithEngine(engineAddr, tc.token))
			if !errors.Is(err, vmre.ErrHandshakeFailed) || errors.Is(err, vmre.ErrProtocolVersionMismatch) {
				t.Fatalf("%v; want ErrHandshakeFailed and no version mismatch", err)
			}
			if got := connect.CodeOf(err); got != tc.want {
				t.Errorf("code %v; want %v", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "handshake failed: ") || !strings.Contains(err.Error(), engineAddr) {
				t.Errorf("error %q; want it to start \"handshake failed: \" and name the engine", err)
			}
		})
	}
}

// TestInitializeNoEngine: an engine that is not there is a handshake
// failure that names the address.
func TestInitializeNoEngine(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1 of loopback: the dial is refused.
	_, err := client.Initialize(t.Context(), vmAddr, client.WithEngine("127.0.0.1:1", "token"))
	if !errors.Is(err, vmre.ErrHandshakeFailed) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("%v; want ErrHandshakeFailed naming 127.0.0.1:1", err)
	}
}

// TestInitializeNotPlugin runs Initialize without the host's variables. It
// sets the environment, so it does not run in parallel.
func TestInitializeNotPlugin(t *testing.T) {
	cases := []struct {
		name, addr, token string
		wantMention       string
	}{
		{"neither", "", "", "vmre serve"},
		{"no addr", "", "tok", vmre.EngineAddressKey + " is not set"},
		{"no token", "127.0.0.1:1", "", vmre.EngineTokenKey + " is not set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(vmre.EngineAddressKey, tc.addr)
			t.Setenv(vmre.EngineTokenKey, tc.token)
			_, err := client.Initialize(t.Context(), vmAddr)
			if !errors.Is(err, client.ErrNotPlugin) {
				t.Fatalf("%v; want ErrNotPlugin", err)
			}
			if !strings.Contains(err.Error(), tc.wantMention) {
				t.Errorf("error %q does not mention %q", err, tc.wantMention)
			}
		})
	}
}
