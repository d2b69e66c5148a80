package launcher_test

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// serveHealth serves h on 127.0.0.1, over HTTP/1.1 only when http1Only (as
// a VM written with a standard library's HTTP server does), and returns
// its address.
func serveHealth(t *testing.T, h http.Handler, http1Only bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vmretest.ServeOn(t, ln, h, http1Only)
	return ln.Addr().String()
}

func healthMux(checker grpchealth.Checker) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(grpchealth.NewHandler(checker))
	return mux
}

// TestProbeHealth: the probe meets a VM where it is: grpc.health.v1 over
// gRPC on h2c or over Connect on HTTP/1.1, the plain HTTP fallback for a
// VM without a health service, and failures that say what the VM answered
// and over what.
func TestProbeHealth(t *testing.T) {
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
		method, protocol, want string // want: in the status, or in the error
	}{
		{"health over h2c", serveHealth(t, healthMux(grpchealth.NewStaticChecker()), false), false,
			launcher.HealthGRPC, "gRPC over h2c", "serving"},
		{"health over HTTP/1.1", serveHealth(t, healthMux(grpchealth.NewStaticChecker()), true), false,
			launcher.HealthGRPC, "Connect (JSON) over HTTP/1.1", "serving"},
		{"no health service", serveHealth(t, http.NotFoundHandler(), true), false,
			launcher.HealthHTTP, "HTTP/1.1", "answers HTTP over HTTP/1.1 (status 404)"},
		{"not serving", serveHealth(t, healthMux(notServing), true), true,
			launcher.HealthGRPC, "Connect (JSON) over HTTP/1.1", "with not_serving"},
		{"nothing listens", nobody, true, launcher.HealthGRPC, "", "grpc.health.v1 Check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := launcher.ProbeHealth(t.Context(), tc.addr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want an error: %v", err, tc.wantErr)
			}
			if res.Method != tc.method || res.Protocol != tc.protocol {
				t.Errorf("probe %q over %q, want %q over %q", res.Method, res.Protocol, tc.method, tc.protocol)
			}
			got := res.Status
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("%q, want it to contain %q", got, tc.want)
			}
		})
	}
}
