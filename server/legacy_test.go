package server_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vmre/vmre"
	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// legacyMethod is what rpcchainvm plugins call, with grpc-go, and no token.
const legacyMethod = "/vm.runtime.Runtime/Initialize"

// listenLegacy starts a LegacyListener that accepts version; it closes with
// the test.
func listenLegacy(t *testing.T, version uint, cfg server.LegacyConfig) *server.LegacyListener {
	t.Helper()
	cfg.Initializer = server.AcceptVersions("", version)
	l, err := server.ListenLegacy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.End)
	return l
}

// legacyInitialize makes an rpcchainvm plugin's call on conn.
func legacyInitialize(t *testing.T, conn *grpc.ClientConn, version uint32, addr string) error {
	t.Helper()
	return conn.Invoke(t.Context(), legacyMethod, &runtimepb.InitializeRequest{ProtocolVersion: version, Addr: addr}, new(emptypb.Empty))
}

// wantLegacyClosed fails the test if a new connection to addr still reaches
// a legacy listener that answers the handshake. A refused dial is the
// expected outcome; it does not insist on one, because once the port is
// free another test's server may listen on it, and such a server answers
// the call otherwise.
func wantLegacyClosed(t *testing.T, addr string) {
	t.Helper()
	conn := grpcConn(t, addr)
	err := legacyInitialize(t, conn, 42, "127.0.0.1:40009")
	switch status.Code(err) {
	case codes.OK, codes.AlreadyExists:
		t.Errorf("a new connection to %s still reaches the legacy listener (%v)", addr, err)
	}
}

func TestLegacy(t *testing.T) {
	t.Parallel()

	t.Run("first valid call wins", func(t *testing.T) {
		t.Parallel()
		l := listenLegacy(t, 42, server.LegacyConfig{})
		if host, _, _ := net.SplitHostPort(l.Addr()); host != "127.0.0.1" {
			t.Errorf("the legacy listener listens on %s; want 127.0.0.1 only", l.Addr())
		}
		conn := grpcConn(t, l.Addr())
		if err := legacyInitialize(t, conn, 42, vmAddr); err != nil {
			t.Fatal(err)
		}
		vmretest.WaitClosed(t, l.Initialized(), "the legacy handshake")
		if got, v := l.Result(); got != vmAddr || v != 42 {
			t.Errorf("Result() = %q, %d; want %q, 42", got, v, vmAddr)
		}
		// The connection that made the call is still open, and a second
		// call on it is refused...
		err := legacyInitialize(t, conn, 42, "127.0.0.1:40001")
		if status.Code(err) != codes.AlreadyExists {
			t.Errorf("second call: %v; want AlreadyExists", err)
		}
		if got, _ := l.Result(); got != vmAddr {
			t.Errorf("a second call changed Result() to %q", got)
		}
		// ...and the listener accepts no new connection.
		wantLegacyClosed(t, l.Addr())
	})

	t.Run("rejections change nothing", func(t *testing.T) {
		t.Parallel()
		l := listenLegacy(t, 42, server.LegacyConfig{})
		conn := grpcConn(t, l.Addr())

		err := legacyInitialize(t, conn, 41, vmAddr)
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != "protocol version mismatch vmre: 42 vm: 41" {
			t.Errorf("version mismatch: %v; want FailedPrecondition: protocol version mismatch vmre: 42 vm: 41", err)
		}
		for _, bad := range []string{"", "127.0.0.1", "127.0.0.1:0", "10.1.2.3:80"} {
			if err := legacyInitialize(t, conn, 42, bad); status.Code(err) != codes.InvalidArgument {
				t.Errorf("addr %q: %v; want InvalidArgument", bad, err)
			}
		}
		if isClosed(l.Initialized()) {
			t.Fatal("a rejected call completed the legacy handshake")
		}
		if err := legacyInitialize(t, conn, 42, vmAddr); err != nil {
			t.Fatalf("the right call after the rejections: %v", err)
		}
		vmretest.WaitClosed(t, l.Initialized(), "the legacy handshake")
	})

	t.Run("allow remote", func(t *testing.T) {
		t.Parallel()
		l := listenLegacy(t, 42, server.LegacyConfig{AllowRemote: true})
		if err := legacyInitialize(t, grpcConn(t, l.Addr()), 42, "10.1.2.3:9650"); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.Result(); got != "10.1.2.3:9650" {
			t.Errorf("Result() addr = %q; want 10.1.2.3:9650", got)
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		t.Parallel()
		l := listenLegacy(t, 42, server.LegacyConfig{MaxBodyBytes: 1024})
		conn := grpcConn(t, l.Addr())
		if err := legacyInitialize(t, conn, 42, strings.Repeat("a", 2048)); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%v; want ResourceExhausted", err)
		}
	})

	t.Run("close before the handshake", func(t *testing.T) {
		t.Parallel()
		l := listenLegacy(t, 42, server.LegacyConfig{})
		addr := l.Addr()
		l.End()
		l.End() // idempotent
		if isClosed(l.Initialized()) {
			t.Error("Close completed the handshake")
		}
		wantLegacyClosed(t, addr)
	})

	t.Run("nil initializer", func(t *testing.T) {
		t.Parallel()
		if _, err := server.ListenLegacy(server.LegacyConfig{}); !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("ListenLegacy without an Initializer = %v; want an error wrapping vmre.ErrInvalidConfig", err)
		}
	})
}
