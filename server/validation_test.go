package server_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// TestRejectionsChangeNothing sends every call the engine must refuse, in
// the checking order of docs/PROTOCOL.md, to one pending launch, then proves the launch
// is untouched: the right call still completes it.
func TestRejectionsChangeNothing(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	c := runtimeClient(t, addr)
	l := vmretest.NewLaunch(t, e, 1, nil)
	unknown := strings.Repeat("0", 64)

	rejections := []struct {
		name    string
		token   string
		version uint32
		addr    string
		want    connect.Code
	}{
		{"no token", "", 1, vmAddr, connect.CodeUnauthenticated},
		{"unknown token", unknown, 1, vmAddr, connect.CodeUnauthenticated},
		{"token with a suffix", l.Token() + "0", 1, vmAddr, connect.CodeUnauthenticated},
		{"token prefix", l.Token()[:63], 1, vmAddr, connect.CodeUnauthenticated},
		{"upper-case token", strings.ToUpper(l.Token()), 1, vmAddr, connect.CodeUnauthenticated},
		// The token is checked first: a bad token with a bad addr and a
		// bad version is still unauthenticated.
		{"unknown token, bad addr and version", unknown, 2, "10.1.2.3:80", connect.CodeUnauthenticated},
		{"addr without a port", l.Token(), 1, "127.0.0.1", connect.CodeInvalidArgument},
		{"empty addr", l.Token(), 1, "", connect.CodeInvalidArgument},
		{"port 0", l.Token(), 1, "127.0.0.1:0", connect.CodeInvalidArgument},
		{"port out of range", l.Token(), 1, "127.0.0.1:65536", connect.CodeInvalidArgument},
		{"named port", l.Token(), 1, "127.0.0.1:http", connect.CodeInvalidArgument},
		{"no host", l.Token(), 1, ":40000", connect.CodeInvalidArgument},
		{"non-loopback IP", l.Token(), 1, "10.1.2.3:80", connect.CodeInvalidArgument},
		{"unspecified IP", l.Token(), 1, "0.0.0.0:40000", connect.CodeInvalidArgument},
		{"host name", l.Token(), 1, "vm.example.com:40000", connect.CodeInvalidArgument},
		{"addr too long", l.Token(), 1, strings.Repeat("a", 600) + ":1", connect.CodeInvalidArgument},
		// The address is checked before the version.
		{"bad addr and version", l.Token(), 2, "10.1.2.3:80", connect.CodeInvalidArgument},
		{"newer VM", l.Token(), 2, vmAddr, connect.CodeFailedPrecondition},
		{"version 0", l.Token(), 0, vmAddr, connect.CodeFailedPrecondition},
	}
	for _, r := range rejections {
		_, err := callInitialize(t.Context(), c, r.token, r.version, r.addr)
		if got := connect.CodeOf(err); err == nil || got != r.want {
			t.Errorf("%s: got %v (%v); want %v", r.name, got, err, r.want)
		}
		if r.want == connect.CodeFailedPrecondition && err != nil {
			if m := mismatchDetail(t, err); m.GetHostName() != "vmre" || m.GetHostProtocolVersion() != 1 || m.GetVmProtocolVersion() != r.version {
				t.Errorf("%s: detail %v; want host vmre, versions 1 and %d", r.name, m, r.version)
			}
			if want := fmt.Sprintf("protocol version mismatch vmre: 1 vm: %d", r.version); !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not contain %q", r.name, err, want)
			}
		}
		if isClosed(l.Initialized()) {
			t.Fatalf("%s: a rejected call completed the handshake", r.name)
		}
	}
	if got, v := l.Result(); got != "" || v != 0 {
		t.Errorf("after rejections Result() = %q, %d; want nothing", got, v)
	}

	res, err := callInitialize(t.Context(), c, l.Token(), 1, vmAddr)
	if err != nil {
		t.Fatalf("the right call after the rejections: %v", err)
	}
	if res.Msg.GetHostName() != "vmre" || res.Msg.GetProtocolVersion() != 1 {
		t.Errorf("response %v; want host_name vmre, protocol_version 1", res.Msg)
	}
	vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")
	if got, v := l.Result(); got != vmAddr || v != 1 {
		t.Errorf("Result() = %q, %d; want %q, 1", got, v, vmAddr)
	}

	// Once initialized: a second call is already_exists, but the version
	// is still checked before the launch's state.
	_, err = callInitialize(t.Context(), c, l.Token(), 1, "127.0.0.1:40001")
	wantCode(t, err, connect.CodeAlreadyExists)
	_, err = callInitialize(t.Context(), c, l.Token(), 2, vmAddr)
	wantCode(t, err, connect.CodeFailedPrecondition)
	if got, _ := l.Result(); got != vmAddr {
		t.Errorf("a second call changed Result() to %q; want %q", got, vmAddr)
	}

	l.End()
	_, err = callInitialize(t.Context(), c, l.Token(), 1, vmAddr)
	wantCode(t, err, connect.CodeNotFound)
}

func TestInitializeAfterEnd(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	c := runtimeClient(t, addr)
	l := vmretest.NewLaunch(t, e, 1, nil)
	l.End()
	l.End() // idempotent

	_, err := callInitialize(t.Context(), c, l.Token(), 1, vmAddr)
	wantCode(t, err, connect.CodeNotFound)
	if isClosed(l.Initialized()) {
		t.Error("an ended launch completed its handshake")
	}
}

func TestAcceptedAddrs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr   string
		remote bool
	}{
		{"127.0.0.1:40000", false},
		{"127.1.2.3:1", false},
		{"[::1]:65535", false},
		{"localhost:40000", false},
		{"10.1.2.3:80", true},
		{"vm.example.com:9650", true},
		{"[2001:db8::1]:9650", true},
	}
	local, localAddr := vmretest.StartEngine(t, server.Config{}, nil)
	remote, remoteAddr := vmretest.StartEngine(t, server.Config{AllowRemote: true}, nil)
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			if tc.remote {
				// A local-only engine refuses it...
				l := vmretest.NewLaunch(t, local, 1, nil)
				_, err := callInitialize(t.Context(), runtimeClient(t, localAddr), l.Token(), 1, tc.addr)
				wantCode(t, err, connect.CodeInvalidArgument)
			}
			// ...and one that allows remote VMs takes it, as a local-only
			// engine takes a loopback address.
			e, addr := local, localAddr
			if tc.remote {
				e, addr = remote, remoteAddr
			}
			l := vmretest.NewLaunch(t, e, 1, nil)
			if _, err := callInitialize(t.Context(), runtimeClient(t, addr), l.Token(), 1, tc.addr); err != nil {
				t.Fatal(err)
			}
			if got, _ := l.Result(); got != tc.addr {
				t.Errorf("Result() addr = %q; want %q", got, tc.addr)
			}
		})
	}
}

// TestAllowRemoteStillChecksForm proves AllowRemote lifts only the loopback
// rule: the address must still be a host:port with a valid port.
func TestAllowRemoteStillChecksForm(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{AllowRemote: true}, nil)
	c := runtimeClient(t, addr)
	l := vmretest.NewLaunch(t, e, 1, nil)
	for _, bad := range []string{"10.1.2.3", "10.1.2.3:0", ":80", ""} {
		_, err := callInitialize(t.Context(), c, l.Token(), 1, bad)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("addr %q: %v; want invalid_argument", bad, err)
		}
	}
}

func TestOversizedBody(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     server.Config
		addrLen int
	}{
		{"default limit", server.Config{}, server.DefaultMaxBodyBytes + 1},
		{"configured limit", server.Config{MaxBodyBytes: 1024}, 1025},
	}
	protocols := []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, tc := range cases {
		e, addr := vmretest.StartEngine(t, tc.cfg, nil)
		for _, p := range protocols {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				l := vmretest.NewLaunch(t, e, 1, nil)
				c := runtimeClient(t, addr, p.opts...)
				_, err := callInitialize(t.Context(), c, l.Token(), 1, strings.Repeat("a", tc.addrLen))
				wantCode(t, err, connect.CodeResourceExhausted)
				// The launch is untouched. (Its address is its own: the
				// parallel cases' launches run on one engine, which refuses
				// an address another running launch announced.)
				if _, err := callInitialize(t.Context(), c, l.Token(), 1, otherVMAddr()); err != nil {
					t.Fatalf("the right call after an oversized one: %v", err)
				}
			})
		}
	}
}

// TestConcurrentInitialize races 50 callers for one launch: exactly one
// wins, the others get already_exists, and Result is the winner's address.
func TestConcurrentInitialize(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	c := runtimeClient(t, addr)
	l := vmretest.NewLaunch(t, e, 1, nil)

	const callers = 50
	type result struct {
		addr string
		code connect.Code
		err  error
	}
	results := make(chan result, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			vm := fmt.Sprintf("127.0.0.1:%d", 40000+i)
			<-start
			_, err := callInitialize(t.Context(), c, l.Token(), 1, vm)
			results <- result{vm, connect.CodeOf(err), err}
		})
	}
	close(start)
	wg.Wait()
	close(results)

	var winners []string
	for r := range results {
		switch {
		case r.err == nil:
			winners = append(winners, r.addr)
		case r.code != connect.CodeAlreadyExists:
			t.Errorf("caller %s: %v; want success or already_exists", r.addr, r.err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d callers succeeded (%v); want exactly 1", len(winners), winners)
	}
	vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")
	if got, _ := l.Result(); got != winners[0] {
		t.Errorf("Result() addr = %q; want the winner's %q", got, winners[0])
	}
}

func TestNewLaunch(t *testing.T) {
	t.Parallel()

	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		e := server.New(server.Config{})
		seen := make(map[string]bool)
		for range 100 {
			l := vmretest.NewLaunch(t, e, 1, nil)
			tok := l.Token()
			if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
				t.Fatalf("token %q; want 64 lower-case hex digits (256 bits)", tok)
			}
			if seen[tok] {
				t.Fatalf("token %q issued twice", tok)
			}
			seen[tok] = true
		}
	})

	t.Run("nil initializer", func(t *testing.T) {
		t.Parallel()
		_, err := server.New(server.Config{}).NewLaunch(server.LaunchConfig{})
		if !errors.Is(err, vmre.ErrInvalidConfig) {
			t.Errorf("NewLaunch(nil) = %v; want an error wrapping vmre.ErrInvalidConfig", err)
		}
	})

	t.Run("pending limit", func(t *testing.T) {
		t.Parallel()
		e := server.New(server.Config{MaxPending: 2})
		first := vmretest.NewLaunch(t, e, 1, nil)
		vmretest.NewLaunch(t, e, 1, nil)
		if _, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", 1)}); err == nil {
			t.Fatal("a third pending launch was accepted; want the limit of 2 to refuse it")
		}
		first.End() // frees a slot
		vmretest.NewLaunch(t, e, 1, nil)
	})

	t.Run("initialized launches leave the pending count", func(t *testing.T) {
		t.Parallel()
		e, addr := vmretest.StartEngine(t, server.Config{MaxPending: 1}, nil)
		l := vmretest.NewLaunch(t, e, 1, nil)
		if _, err := callInitialize(t.Context(), runtimeClient(t, addr), l.Token(), 1, vmAddr); err != nil {
			t.Fatal(err)
		}
		vmretest.NewLaunch(t, e, 1, nil)
	})

	t.Run("after Close", func(t *testing.T) {
		t.Parallel()
		e := server.New(server.Config{})
		e.Close()
		e.Close() // idempotent
		if _, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", 1)}); !errors.Is(err, server.ErrEngineClosed) {
			t.Errorf("NewLaunch after Close = %v; want server.ErrEngineClosed", err)
		}
	})
}
