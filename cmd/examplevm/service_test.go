package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	"github.com/vmre/vmre/internal/vmretest"
)

// serveH2C serves h on a new 127.0.0.1 listener over HTTP/1.1 and h2c
// until the test ends, and returns its base URL.
func serveH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	return "http://" + vmretest.Serve(t, h)
}

// newHTTPClient returns a client speaking HTTP/2 without TLS when h2c is
// set, HTTP/1.1 otherwise; its connections close when the test ends.
func newHTTPClient(t *testing.T, h2c bool) *http.Client {
	if h2c {
		return vmretest.H2CClient(t)
	}
	return vmretest.HTTP1Client(t)
}

var protocols = []struct {
	name string
	h2c  bool
	opts []connect.ClientOption
}{
	{"connect over HTTP/1.1", false, nil},
	{"connect over h2c", true, nil},
	{"grpc", true, []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", false, []connect.ClientOption{connect.WithGRPCWeb()}},
}

func TestChainService(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			url := serveH2C(t, newHandler(newChain(nil), slog.New(slog.DiscardHandler), false))
			httpClient := newHTTPClient(t, p.h2c)
			chain := examplev1connect.NewChainServiceClient(httpClient, url, p.opts...)

			last, err := chain.LastAccepted(ctx, connect.NewRequest(&examplev1.LastAcceptedRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			genesis := last.Msg.GetBlock()
			if genesis.GetHeight() != 0 || genesis.GetParentId() != "" || len(genesis.GetId()) != 64 {
				t.Fatalf("genesis = %v", genesis)
			}

			built, err := chain.BuildBlock(ctx, connect.NewRequest(&examplev1.BuildBlockRequest{Data: []byte("hello")}))
			if err != nil {
				t.Fatal(err)
			}
			b := built.Msg.GetBlock()
			if b.GetHeight() != 1 || b.GetParentId() != genesis.GetId() || string(b.GetData()) != "hello" ||
				b.GetId() != wantID(genesis.GetId(), 1, []byte("hello")) || b.GetTimestampMs() <= 0 {
				t.Fatalf("BuildBlock = %v", b)
			}

			got, err := chain.GetBlock(ctx, connect.NewRequest(&examplev1.GetBlockRequest{Height: 1}))
			if err != nil {
				t.Fatal(err)
			}
			if got.Msg.GetBlock().GetId() != b.GetId() {
				t.Fatalf("GetBlock(1) = %v, want %v", got.Msg.GetBlock(), b)
			}

			_, err = chain.GetBlock(ctx, connect.NewRequest(&examplev1.GetBlockRequest{Height: 2}))
			wantError(t, err, connect.CodeNotFound, "block not found at height 2: the last accepted height is 1")

			_, err = chain.BuildBlock(ctx, connect.NewRequest(&examplev1.BuildBlockRequest{Data: make([]byte, maxDataBytes+1)}))
			wantError(t, err, connect.CodeInvalidArgument, "block data too large: 1048577 bytes, the limit is 1048576 (1 MiB)")

			_, err = chain.BuildBlock(ctx, connect.NewRequest(&examplev1.BuildBlockRequest{Data: make([]byte, maxRequestBytes)}))
			wantError(t, err, connect.CodeResourceExhausted, "")

			full, err := chain.BuildBlock(ctx, connect.NewRequest(&examplev1.BuildBlockRequest{Data: make([]byte, maxDataBytes)}))
			if err != nil {
				t.Fatalf("BuildBlock of exactly 1 MiB: %v", err)
			}
			if h := full.Msg.GetBlock().GetHeight(); h != 2 {
				t.Fatalf("height after the refused blocks = %d, want 2", h)
			}

			health := grpchealth.NewClient(httpClient, url, p.opts...)
			for _, service := range []string{"", examplev1connect.ChainServiceName} {
				res, err := health.Check(ctx, &grpchealth.CheckRequest{Service: service})
				if err != nil || res.Status != grpchealth.StatusServing {
					t.Errorf("health of %q = %v, %v; want serving", service, res, err)
				}
			}
		})
	}
}

func wantError(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	var ce *connect.Error
	if errors.As(err, &ce) && !strings.Contains(ce.Message(), msg) {
		t.Fatalf("message = %q, want it to contain %q", ce.Message(), msg)
	}
}

// TestBlockLogged checks the record logged per block.
func TestBlockLogged(t *testing.T) {
	t.Parallel()
	var logs vmretest.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	svc := &chainService{chain: newChain(nil), log: log}
	res, err := svc.BuildBlock(context.Background(), connect.NewRequest(&examplev1.BuildBlockRequest{Data: []byte("abc")}))
	if err != nil {
		t.Fatal(err)
	}
	recs := parseRecords(t, logs.String())
	if len(recs) != 1 {
		t.Fatalf("records = %v, want one", recs)
	}
	want := map[string]any{"level": "INFO", "msg": "block built", "height": 1.0,
		"id": res.Msg.GetBlock().GetId(), "bytes": 3.0}
	for k, v := range want {
		if recs[0][k] != v {
			t.Errorf("record[%q] = %v, want %v", k, recs[0][k], v)
		}
	}
}
