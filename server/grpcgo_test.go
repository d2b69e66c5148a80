package server_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

const initializeMethod = "/vmre.runtime.v1.RuntimeService/Initialize"

// grpcConn dials addr with grpc-go over h2c; the connection closes with
// the test.
func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestGRPCGoNative runs the native handshake with a grpc-go client, the
// token in the "authorization" metadata as a gRPC VM would send it.
func TestGRPCGoNative(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	conn := grpcConn(t, addr)

	invoke := func(token string, version uint32) (*runtimev1.InitializeResponse, error) {
		ctx := t.Context()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		res := new(runtimev1.InitializeResponse)
		err := conn.Invoke(ctx, initializeMethod, &runtimev1.InitializeRequest{ProtocolVersion: version, Addr: vmAddr}, res)
		return res, err
	}

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		l := vmretest.NewLaunch(t, e, 1, nil)
		res, err := invoke(l.Token(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.GetHostName() != "vmre" || res.GetProtocolVersion() != 1 {
			t.Errorf("response %v; want host_name vmre, protocol_version 1", res)
		}
		vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")
		_, err = invoke(l.Token(), 1)
		if got := status.Code(err); got != codes.AlreadyExists {
			t.Errorf("second call: %v; want AlreadyExists", err)
		}
	})

	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		vmretest.NewLaunch(t, e, 1, nil)
		_, err := invoke("", 1)
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("%v; want Unauthenticated", err)
		}
	})

	t.Run("version mismatch", func(t *testing.T) {
		t.Parallel()
		l := vmretest.NewLaunch(t, e, 1, nil)
		_, err := invoke(l.Token(), 2)
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != "protocol version mismatch vmre: 1 vm: 2" {
			t.Fatalf("%v; want FailedPrecondition: protocol version mismatch vmre: 1 vm: 2", err)
		}
		// grpc-go decodes the detail from grpc-status-details-bin.
		details := st.Details()
		if len(details) != 1 {
			t.Fatalf("details %v; want one ProtocolVersionMismatch", details)
		}
		m, ok := details[0].(*runtimev1.ProtocolVersionMismatch)
		if !ok || m.GetHostName() != "vmre" || m.GetHostProtocolVersion() != 1 || m.GetVmProtocolVersion() != 2 {
			t.Errorf("detail %v; want host vmre, host version 1, vm version 2", details[0])
		}
	})
}

func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	health := healthpb.NewHealthClient(grpcConn(t, addr))

	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		res, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check of %q: %v", service, err)
		}
		return res.GetStatus()
	}
	if got := check(""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("server health %v; want SERVING", got)
	}
	if got := check("vmre.runtime.v1.RuntimeService"); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("RuntimeService health %v; want SERVING", got)
	}
	_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v; want NotFound", err)
	}
	e.Close()
	if got := check("vmre.runtime.v1.RuntimeService"); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("RuntimeService health after Close %v; want NOT_SERVING", got)
	}
}

func TestGRPCReflection(t *testing.T) {
	t.Parallel()
	_, addr := vmretest.StartEngine(t, server.Config{}, nil)
	stream, err := reflectionpb.NewServerReflectionClient(grpcConn(t, addr)).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := res.GetErrorResponse(); e != nil {
			t.Fatalf("reflection error %d: %s", e.GetErrorCode(), e.GetErrorMessage())
		}
		return res
	}

	res := ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	var services []string
	for _, s := range res.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"vmre.runtime.v1.RuntimeService", "grpc.health.v1.Health"} {
		if !slices.Contains(services, want) {
			t.Errorf("ListServices = %v; want it to include %s", services, want)
		}
	}

	// The descriptors are there too, so grpcurl can build requests.
	res = ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "vmre.runtime.v1.RuntimeService",
		},
	})
	files := res.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) == 0 {
		t.Fatal("no file descriptor for vmre.runtime.v1.RuntimeService")
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(files[0], &fd); err != nil {
		t.Fatal(err)
	}
	if fd.GetName() != "vmre/runtime/v1/runtime.proto" {
		t.Errorf("file %q; want vmre/runtime/v1/runtime.proto", fd.GetName())
	}

	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}
