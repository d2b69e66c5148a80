package client_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
)

const vmAddr = "127.0.0.1:40000"

// transports are the engine clients a VM may use: every protocol over h2c
// (the default), and the two that also work over HTTP/1.1.
var transports = []struct {
	name     string
	protocol client.Protocol
	http1    bool
}{
	{"connect/h2c", client.ProtocolConnect, false},
	{"connect/http1.1", client.ProtocolConnect, true},
	{"grpc/h2c", client.ProtocolGRPC, false},
	{"grpcweb/h2c", client.ProtocolGRPCWeb, false},
	{"grpcweb/http1.1", client.ProtocolGRPCWeb, true},
}

// transportOptions returns the options selecting a transport. The HTTP
// client, if any, is closed with the test.
func transportOptions(t *testing.T, protocol client.Protocol, http1 bool) []client.Option {
	opts := []client.Option{client.WithProtocol(protocol)}
	if http1 {
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
		t.Cleanup(hc.CloseIdleConnections)
		opts = append(opts, client.WithHTTPClient(hc))
	}
	return opts
}

func TestInitialize(t *testing.T) {
	t.Parallel()
	e, engineAddr := startEngine(t, nil)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			l := newLaunch(t, e, 1)
			opts := append(transportOptions(t, tr.protocol, tr.http1), client.WithEngine(engineAddr, l.Token()))
			host, err := client.Initialize(t.Context(), vmAddr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if *host != (client.Host{Name: "vmre", ProtocolVersion: 1}) {
				t.Errorf("host %+v; want vmre, version 1", *host)
			}
			waitFor(t, l.Initialized(), "the launch's handshake")
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
	e, engineAddr := startEngine(t, nil)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			l := newLaunch(t, e, 1)
			opts := append(transportOptions(t, tr.protocol, tr.http1),
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
	e, engineAddr := startEngine(t, nil)
	l := newLaunch(t, e, 1)
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
