package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// lease is an open Lease stream, drained in the background.
type lease struct {
	first chan struct{} // closed when the first message arrives
	each  chan struct{} // a value per message, while it has room
	done  chan struct{} // closed when the stream ends
	msgs  int           // messages received; valid once done is closed
	err   error         // the stream's error; valid once done is closed
	// cancel ends the stream from the VM's side.
	cancel context.CancelFunc
}

// openLease calls Lease with token and drains the stream in a goroutine
// that ends with the stream. The stream is closed when the test ends.
func openLease(t *testing.T, ctx context.Context, c runtimev1connect.RuntimeServiceClient, token string) (*lease, error) {
	t.Helper()
	req := connect.NewRequest(&runtimev1.LeaseRequest{})
	req.Header().Set("Authorization", "Bearer "+token)
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Lease(ctx, req)
	if err != nil {
		cancel()
		return nil, err
	}
	ls := &lease{first: make(chan struct{}), each: make(chan struct{}, 64), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(ls.done)
		for stream.Receive() {
			if ls.msgs++; ls.msgs == 1 {
				close(ls.first)
			}
			select {
			case ls.each <- struct{}{}:
			default:
			}
		}
		ls.err = stream.Err()
	}()
	t.Cleanup(func() {
		stream.Close()
		<-ls.done
		cancel()
	})
	return ls, nil
}

// openLeaseErr opens a lease that the engine must refuse and returns the
// refusal. A Connect server stream reports its error on the first Receive.
func openLeaseErr(t *testing.T, c runtimev1connect.RuntimeServiceClient, token string) error {
	t.Helper()
	ls, err := openLease(t, t.Context(), c, token)
	if err != nil {
		return err
	}
	vmretest.WaitClosed(t, ls.done, "the refused lease's end")
	if ls.msgs != 0 {
		t.Errorf("a refused lease sent %d messages", ls.msgs)
	}
	return ls.err
}

// initialized returns a launch that has completed its handshake.
func initialized(t *testing.T, e *server.Engine, c runtimev1connect.RuntimeServiceClient) *server.Launch {
	t.Helper()
	l := vmretest.NewLaunch(t, e, 1, nil)
	if _, err := callInitialize(t.Context(), c, l.Token(), 1, otherVMAddr()); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitLeaseEnd waits for a granted lease to end cleanly after one message.
func waitLeaseEnd(t *testing.T, ls *lease) {
	t.Helper()
	vmretest.WaitClosed(t, ls.done, "the lease's end")
	if ls.msgs != 1 || ls.err != nil {
		t.Errorf("lease ended after %d messages with %v; want 1 message and a clean end", ls.msgs, ls.err)
	}
}

func TestLease(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	protocols := []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			c := runtimeClient(t, addr, p.opts...)

			t.Run("before Initialize", func(t *testing.T) {
				t.Parallel()
				l := vmretest.NewLaunch(t, e, 1, nil)
				wantCode(t, openLeaseErr(t, c, l.Token()), connect.CodeFailedPrecondition)
				// The launch can still complete its handshake and lease.
				if _, err := callInitialize(t.Context(), c, l.Token(), 1, vmAddr); err != nil {
					t.Fatal(err)
				}
				ls, err := openLease(t, t.Context(), c, l.Token())
				if err != nil {
					t.Fatal(err)
				}
				vmretest.WaitClosed(t, ls.first, "the lease's first message")
			})

			t.Run("unknown token", func(t *testing.T) {
				t.Parallel()
				wantCode(t, openLeaseErr(t, c, "feedface"), connect.CodeUnauthenticated)
			})

			t.Run("ends with Launch.End", func(t *testing.T) {
				t.Parallel()
				l := initialized(t, e, c)
				ls, err := openLease(t, t.Context(), c, l.Token())
				if err != nil {
					t.Fatal(err)
				}
				vmretest.WaitClosed(t, ls.first, "the lease's first message")
				if isClosed(ls.done) {
					t.Fatal("the lease ended before Launch.End")
				}
				// Only one lease per launch.
				wantCode(t, openLeaseErr(t, c, l.Token()), connect.CodeAlreadyExists)
				if isClosed(ls.done) {
					t.Fatal("a second lease ended the first")
				}
				l.End()
				waitLeaseEnd(t, ls)
				wantCode(t, openLeaseErr(t, c, l.Token()), connect.CodeNotFound)
			})

			t.Run("ends when the VM goes away", func(t *testing.T) {
				t.Parallel()
				// An engine of its own, whose Lease handler tells when it
				// returns: the engine's side of the stream must end too,
				// not only the client's.
				handlerDone := make(chan struct{})
				e, addr := vmretest.StartEngine(t, server.Config{}, func(h http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						h.ServeHTTP(w, r)
						if r.URL.Path == runtimev1connect.RuntimeServiceLeaseProcedure {
							close(handlerDone)
						}
					})
				})
				c := runtimeClient(t, addr, p.opts...)
				l := initialized(t, e, c)
				ctx, cancel := context.WithCancel(t.Context())
				ls, err := openLease(t, ctx, c, l.Token())
				if err != nil {
					t.Fatal(err)
				}
				vmretest.WaitClosed(t, ls.first, "the lease's first message")
				cancel()
				vmretest.WaitClosed(t, ls.done, "the canceled lease's end")
				vmretest.WaitClosed(t, handlerDone, "the end of the engine's Lease handler")
			})
		})
	}
}

// TestCloseEndsLeases proves Engine.Close ends every open lease, and turns
// the engine's grpc health to NOT_SERVING (see TestGRPCHealth).
func TestCloseEndsLeases(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	c := runtimeClient(t, addr)
	var leases []*lease
	for range 3 {
		l := initialized(t, e, c)
		ls, err := openLease(t, t.Context(), c, l.Token())
		if err != nil {
			t.Fatal(err)
		}
		vmretest.WaitClosed(t, ls.first, "the lease's first message")
		leases = append(leases, ls)
	}
	start := time.Now()
	e.Close()
	for _, ls := range leases {
		waitLeaseEnd(t, ls)
	}
	t.Logf("3 leases ended %v after Close", time.Since(start))
}
