package launcher

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vmre/vmre/internal/h2c"
)

// legacyShutdownProcedure is the rpcchainvm VM service's Shutdown method.
const legacyShutdownProcedure = "/vm.VM/Shutdown"

// legacyShutdown returns the call of an rpcchainvm plugin's
// /vm.VM/Shutdown (google.protobuf.Empty in and out) over gRPC.
func legacyShutdown(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		httpClient := h2c.NewClient()
		defer httpClient.CloseIdleConnections()
		c := connect.NewClient[emptypb.Empty, emptypb.Empty](httpClient, "http://"+addr+legacyShutdownProcedure, connect.WithGRPC())
		_, err := c.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
		return err
	}
}
