package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/grpchealth"
	"go.uber.org/goleak"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
)

// helperEnv switches the test binary into a VM plugin, as os/exec's tests
// re-run the test binary as their helper commands. Its value is the
// protocol version the VM announces.
const helperEnv = "VMRE_CLIENT_TEST_VM"

// helloPath is served by the helper VM, so a test can call the VM at the
// address it reported in its handshake.
const helloPath = "/hello"

// TestMain runs the helper VM when helperEnv is set, and otherwise the
// tests, failing the package when one leaves a goroutine behind.
func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(runVM(v))
	}
	goleak.VerifyTestMain(m)
}

// runVM is the whole main of a VM built on client.Serve: a handler and
// one call. It serves a greeting and grpc.health.v1.
func runVM(version string) int {
	v, err := strconv.ParseUint(version, 10, 32)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: want a protocol version\n", helperEnv, version)
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc(helloPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d over %s\n", os.Getpid(), r.Proto)
	})
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker()))
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err = client.Serve(context.Background(), mux,
		client.WithProtocolVersion(uint(v)),
		client.WithLogger(logger),
		client.WithShutdownTimeout(2*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// waitTimeout bounds every wait in these tests; it only turns a hang into a
// failure.
const waitTimeout = 10 * time.Second

// acceptVersion is the host's Initializer in these tests: it accepts one
// protocol version.
type acceptVersion uint

func (v acceptVersion) Initialize(_ context.Context, protocolVersion uint, _ string) error {
	if protocolVersion != uint(v) {
		return &vmre.VersionMismatchError{HostName: vmre.DefaultHostName, HostVersion: uint(v), VMVersion: protocolVersion}
	}
	return nil
}

// drain reads and discards a response body, then closes it.
func drain(res *http.Response) {
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
}
