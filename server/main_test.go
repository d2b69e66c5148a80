package server_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// server, client and stream a test opens is closed in its t.Cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// vmAddr is the address the tests' VMs announce. Nothing listens there: the
// engine only checks its form, and that no other VM of the engine serves
// there (otherVMAddr gives each further VM an address of its own).
const vmAddr = "127.0.0.1:40000"

var nextVMPort atomic.Int32

// otherVMAddr is a loopback address no other call of the tests announces,
// for a VM beside the one at vmAddr.
func otherVMAddr() string { return "127.0.0.1:" + strconv.Itoa(41000+int(nextVMPort.Add(1))) }

// runtimeClient is a Connect-protocol RuntimeService client over h2c.
func runtimeClient(t *testing.T, addr string, opts ...connect.ClientOption) runtimev1connect.RuntimeServiceClient {
	return runtimev1connect.NewRuntimeServiceClient(vmretest.H2CClient(t), "http://"+addr, opts...)
}

// callInitialize calls Initialize with token as the bearer token (no
// Authorization header when token is empty).
func callInitialize(ctx context.Context, c runtimev1connect.RuntimeServiceClient, token string, version uint32, addr string) (*connect.Response[runtimev1.InitializeResponse], error) {
	req := connect.NewRequest(&runtimev1.InitializeRequest{ProtocolVersion: version, Addr: addr})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	return c.Initialize(ctx, req)
}

// wantCode fails the test unless err is a Connect error with code want.
func wantCode(t *testing.T, err error, want connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded; want %v", want)
	}
	if got := connect.CodeOf(err); got != want {
		t.Fatalf("code = %v (%v); want %v", got, err, want)
	}
}

// mismatchDetail returns the ProtocolVersionMismatch detail of err.
func mismatchDetail(t *testing.T, err error) *runtimev1.ProtocolVersionMismatch {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *connect.Error", err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail %s: %v", d.Type(), derr)
		}
		if m, ok := v.(*runtimev1.ProtocolVersionMismatch); ok {
			return m
		}
	}
	t.Fatalf("error %v has no ProtocolVersionMismatch detail", err)
	return nil
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// callInitializeTLS calls Initialize as a remote VM does, announcing the
// fingerprint of its server's certificate.
func callInitializeTLS(t *testing.T, c runtimev1connect.RuntimeServiceClient, token, addr, certSum string) (*connect.Response[runtimev1.InitializeResponse], error) {
	t.Helper()
	req := connect.NewRequest(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: addr, CertSha256: certSum})
	req.Header().Set("Authorization", "Bearer "+token)
	return c.Initialize(t.Context(), req)
}
