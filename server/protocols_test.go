package server_test

import (
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// protoHeader is set on every response by recordProto: the HTTP version the
// request came in with, so a test can prove which transport a client used.
const protoHeader = "X-Test-Proto"

func recordProto(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(protoHeader, r.Proto)
		h.ServeHTTP(w, r)
	})
}

// TestConnectGoClients runs the whole native handshake, lease included,
// with connect-go clients of each protocol over each transport it allows:
// gRPC needs HTTP/2, Connect and gRPC-Web work over HTTP/1.1 too.
func TestConnectGoClients(t *testing.T) {
	t.Parallel()
	e := server.New(server.Config{})
	addr := vmretest.Serve(t, recordProto(e.Handler()))
	t.Cleanup(e.Close)

	cases := []struct {
		name     string
		opts     []connect.ClientOption
		http1    bool
		wantHTTP string
	}{
		{"connect/http1.1", nil, true, "HTTP/1.1"},
		{"connect/h2c", nil, false, "HTTP/2.0"},
		{"grpc/h2c", []connect.ClientOption{connect.WithGRPC()}, false, "HTTP/2.0"},
		{"grpcweb/http1.1", []connect.ClientOption{connect.WithGRPCWeb()}, true, "HTTP/1.1"},
		{"grpcweb/h2c", []connect.ClientOption{connect.WithGRPCWeb()}, false, "HTTP/2.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hc := vmretest.H2CClient(t)
			if tc.http1 {
				hc = vmretest.HTTP1Client(t)
			}
			c := runtimev1connect.NewRuntimeServiceClient(hc, "http://"+addr, tc.opts...)
			l := vmretest.NewLaunch(t, e, 1, nil)
			vmAddr := otherVMAddr() // the cases share the engine
			ctx := t.Context()

			_, err := callInitialize(ctx, c, "", 1, vmAddr)
			wantCode(t, err, connect.CodeUnauthenticated)

			_, err = callInitialize(ctx, c, l.Token(), 2, vmAddr)
			wantCode(t, err, connect.CodeFailedPrecondition)
			if m := mismatchDetail(t, err); m.GetHostProtocolVersion() != 1 || m.GetVmProtocolVersion() != 2 {
				t.Errorf("detail %v; want host version 1, vm version 2", m)
			}

			res, err := callInitialize(ctx, c, l.Token(), 1, vmAddr)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Header().Get(protoHeader); got != tc.wantHTTP {
				t.Errorf("the request came over %s; want %s", got, tc.wantHTTP)
			}
			if res.Msg.GetHostName() != "vmre" || res.Msg.GetProtocolVersion() != 1 {
				t.Errorf("response %v; want host_name vmre, protocol_version 1", res.Msg)
			}
			vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")

			_, err = callInitialize(ctx, c, l.Token(), 1, vmAddr)
			wantCode(t, err, connect.CodeAlreadyExists)

			// The lease: one message, then the stream stays open until the
			// host ends the launch.
			req := connect.NewRequest(&runtimev1.LeaseRequest{})
			req.Header().Set("Authorization", "Bearer "+l.Token())
			stream, err := c.Lease(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if !stream.Receive() {
				t.Fatalf("lease sent no message: %v", stream.Err())
			}
			ended := make(chan bool, 1)
			go func() { ended <- stream.Receive() }()
			l.End()
			select {
			case more := <-ended:
				if more {
					t.Error("lease sent a second message; want the stream to end")
				}
			case <-time.After(vmretest.WaitTimeout):
				t.Fatalf("lease still open %v after Launch.End", vmretest.WaitTimeout)
			}
			if err := stream.Err(); err != nil {
				t.Errorf("lease ended with %v; want a clean end", err)
			}

			_, err = callInitialize(ctx, c, l.Token(), 1, vmAddr)
			wantCode(t, err, connect.CodeNotFound)
		})
	}
}
