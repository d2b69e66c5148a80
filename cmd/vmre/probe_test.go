//go:build unix

package main

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/grpchealth"
	"github.com/vmre/vmre/internal/vmretest"
)

// serveHTTP1 serves h on 127.0.0.1 over HTTP/1.1 only, as a VM written
// with a standard library's HTTP server does, and returns its address.
func serveHTTP1(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vmretest.ServeOn(t, ln, h, true)
	return ln.Addr().String()
}

func healthMux(checker grpchealth.Checker) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(grpchealth.NewHandler(checker))
	return mux
}

// The probe meets an HTTP/1.1 VM where it is: grpc.health.v1 over Connect,
// the plain HTTP fallback over HTTP/1.1, and a failure that says which
// protocol the VM speaks and, for a VM that is not Go, names no Go library.
func TestProbeHTTP1(t *testing.T) {
	t.Parallel()
	notServing := grpchealth.NewStaticChecker()
	notServing.SetStatus("", grpchealth.StatusNotServing)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name                   string
		addr                   string
		wantErr                bool
		method, protocol, want string // want: in the status, or in the cause of a failure
	}{
		{"health", serveHTTP1(t, healthMux(grpchealth.NewStaticChecker())), false,
			probeGRPCHealth, "Connect (JSON) over HTTP/1.1", "serving"},
		{"no health service", serveHTTP1(t, http.NotFoundHandler()), false,
			probeHTTP, "HTTP/1.1", "answers HTTP over HTTP/1.1 (status 404)"},
		{"not serving", serveHTTP1(t, healthMux(notServing)), true,
			probeGRPCHealth, "Connect (JSON) over HTTP/1.1", "which speaks Connect (JSON) over HTTP/1.1"},
		{"nothing listens", nobody, true,
			probeGRPCHealth, "", "answers neither gRPC over HTTP/2 without TLS (h2c) nor the Connect protocol over HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := probeAddr(t.Context(), tc.addr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want an error: %v", err, tc.wantErr)
			}
			if res.method != tc.method || res.protocol != tc.protocol {
				t.Errorf("probe %q over %q, want %q over %q", res.method, res.protocol, tc.method, tc.protocol)
			}
			if !tc.wantErr {
				if !strings.Contains(res.status, tc.want) {
					t.Errorf("status %q, want it to contain %q", res.status, tc.want)
				}
				return
			}
			cause, fix := healthFailure(res, false)
			if !strings.Contains(cause, tc.want) {
				t.Errorf("cause %q, want it to contain %q", cause, tc.want)
			}
			if strings.Contains(fix, "connectrpc.com") || !strings.Contains(fix, "docs/VM-AUTHORS.md") {
				t.Errorf("fix for a VM that is not Go: %q", fix)
			}
			if _, goFix := healthFailure(res, true); tc.protocol != "" && !strings.Contains(goFix, "connectrpc.com/grpchealth") {
				t.Errorf("fix for a Go VM: %q", goFix)
			}
		})
	}
}
