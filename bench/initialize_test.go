package bench

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// BenchmarkInitialize is the handshake RPC alone, in process: an engine on
// a real 127.0.0.1 listener, a fresh launch per iteration (NewLaunch and
// End are in the timed part: they are the host's share of a handshake), and
// one client per protocol whose connection is reused across iterations.
func BenchmarkInitialize(b *testing.B) {
	e, addr := vmretest.StartEngine(b, server.Config{}, nil)
	protocols := []struct {
		name  string
		http2 bool
		opts  []connect.ClientOption
	}{
		{"connect-json", false, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-proto", false, nil},
		{"grpc", true, []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb", false, []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, p := range protocols {
		b.Run(p.name, func(b *testing.B) {
			// The HTTP clients a VM's client.Initialize uses by default.
			hc := h2c.NewHTTP1Client()
			if p.http2 {
				hc = h2c.NewClient()
			}
			defer hc.CloseIdleConnections()
			rpc := runtimev1connect.NewRuntimeServiceClient(hc, "http://"+addr, p.opts...)
			initialize(b, e, rpc) // dials the connection the iterations reuse
			for b.Loop() {
				initialize(b, e, rpc)
			}
		})
	}
}

func initialize(b *testing.B, e *server.Engine, rpc runtimev1connect.RuntimeServiceClient) {
	launch, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", vmre.ProtocolVersion)})
	if err != nil {
		b.Fatal(err)
	}
	defer launch.End()
	req := connect.NewRequest(&runtimev1.InitializeRequest{
		ProtocolVersion: uint32(vmre.ProtocolVersion),
		Addr:            "127.0.0.1:40000",
	})
	req.Header().Set("Authorization", "Bearer "+launch.Token())
	if _, err := rpc.Initialize(context.Background(), req); err != nil {
		b.Fatal(err)
	}
}
