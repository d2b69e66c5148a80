package client_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/client"
)

// A VM's main: mount the VM's services on a handler and hand it to Serve,
// which does the rest of the process's life. Started by a host, it returns
// after SIGTERM or when the host ends the lease; started by hand, it
// returns ErrNotPlugin, whose text says how to run it under `vmre serve`.
func ExampleServe() {
	mux := http.NewServeMux()
	// The VM's own Connect or gRPC services go here, for example:
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker()))

	if err := client.Serve(context.Background(), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// A VM that runs its own server calls Initialize once that server listens,
// with the listener's address. The engine's address and token come from the
// environment the host set. (Serve does all of this, and holds the lease.)
func ExampleInitialize() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.NewServeMux()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	host, err := client.Initialize(context.Background(), ln.Addr().String(),
		client.WithProtocol(client.ProtocolGRPC))
	if err != nil {
		// For example "handshake failed: protocol version mismatch vmre: 2 vm: 1".
		fmt.Fprintln(os.Stderr, err)
		srv.Close()
		<-served
		os.Exit(1)
	}
	fmt.Printf("serving for %s, protocol version %d\n", host.Name, host.ProtocolVersion)

	// ... serve until told to stop, then:
	srv.Shutdown(context.Background())
	<-served
}
