package launcher_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/launcher"
)

// legacyVM behaves as an rpcchainvm plugin built on grpc-go: it reads
// AVALANCHE_VM_RUNTIME_ENGINE_ADDR, calls /vm.runtime.Runtime/Initialize
// without a token, serves /vm.VM/Shutdown and, when stubborn, ignores
// SIGTERM until Shutdown has been called, as such plugins do; otherwise
// it exits 0 on SIGTERM, whenever that comes. It sets up its handling of
// SIGTERM before anything else: a host may stop it the moment its
// Initialize is accepted, before the call has even returned.
func legacyVM(stubborn bool) int {
	sigs := make(chan os.Signal, 1)
	if stubborn {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	if os.Getenv(waitUSR1Key) != "" {
		waitUSR1()
	}
	engineAddr := os.Getenv(launcher.AvalancheEngineAddressKey)
	if engineAddr == "" {
		fmt.Fprintln(os.Stderr, launcher.AvalancheEngineAddressKey+" is not set")
		return 1
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vm := &legacyVMServer{stopped: make(chan struct{})}
	srv := grpc.NewServer()
	srv.RegisterService(&legacyVMServiceDesc, vm)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(engineAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = conn.Invoke(ctx, "/vm.runtime.Runtime/Initialize",
		&runtimepb.InitializeRequest{ProtocolVersion: 1, Addr: lis.Addr().String()}, &emptypb.Empty{})
	cancel()
	conn.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "initialize:", err)
		return 1
	}
	announceReady()

	select {
	case <-vm.stopped:
	case <-sigs:
	}
	srv.GracefulStop()
	<-served
	return 0
}

type legacyVMServer struct {
	once    sync.Once
	stopped chan struct{}
}

var legacyVMServiceDesc = grpc.ServiceDesc{
	ServiceName: "vm.VM",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Shutdown",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			vm := srv.(*legacyVMServer)
			vm.once.Do(func() { close(vm.stopped) })
			return &emptypb.Empty{}, nil
		},
	}},
}
