package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// helloPath is served by the helper VM, so a test can call the VM at the
// address it reported in its handshake.
const helloPath = "/hello"

// TestMain runs the helper VM when vmretest.Command started the test
// binary as one, and otherwise the tests, failing the package when one
// leaves a goroutine behind.
func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{"vm": runVM, "remote-vm": runRemoteVM})
}

// runVM is the whole main of a VM built on client.Serve: a handler and
// one call. It serves a greeting and grpc.health.v1. Its argument is the
// protocol version it announces.
func runVM(args []string) int {
	v, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%q: want a protocol version\n", args[0])
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
