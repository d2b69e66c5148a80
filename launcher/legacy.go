package launcher

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// legacyShutdownProcedure is the rpcchainvm VM service's Shutdown method.
const legacyShutdownProcedure = "/vm.VM/Shutdown"

// legacyShutdown returns the call of an rpcchainvm plugin's
// /vm.VM/Shutdown (google.protobuf.Empty in and out) over gRPC, with the
// Runtime's client of the VM.
func legacyShutdown(httpClient *http.Client, addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c := connect.NewClient[emptypb.Empty, emptypb.Empty](httpClient, "http://"+addr+legacyShutdownProcedure, connect.WithGRPC())
		_, err := c.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
		return err
	}
}
