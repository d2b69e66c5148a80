package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/server"
)

// The host mounts the engine in its own mux, registers one launch per VM and
// waits for the VM to call back. Here the VM's side is client.Initialize,
// called in-process; a real VM runs it (or client.Serve) after being
// started with the two environment variables.
func ExampleEngine() {
	engine := server.New(server.Config{})
	defer engine.Close()

	mux := http.NewServeMux()
	mux.Handle("/", engine.Handler()) // next to the node's other routes

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, mux) }()
	defer func() { cancel(); <-served }()

	// The launch accepts the VM only if it speaks this release's version.
	launch, err := engine.NewLaunch(server.LaunchConfig{
		Initializer: server.AcceptVersions(vmre.DefaultHostName, vmre.ProtocolVersion),
	})
	if err != nil {
		panic(err)
	}
	defer launch.End()
	// The launcher puts these into the VM's environment.
	engineAddr, token := ln.Addr().String(), launch.Token()

	// The VM, listening on 127.0.0.1:40000, calls back.
	host, err := client.Initialize(ctx, "127.0.0.1:40000", client.WithEngine(engineAddr, token))
	if err != nil {
		panic(err)
	}
	fmt.Printf("VM: host %s speaks protocol version %d\n", host.Name, host.ProtocolVersion)

	select {
	case <-launch.Initialized():
		addr, version := launch.Result()
		fmt.Printf("host: VM at %s speaks protocol version %d\n", addr, version)
	case <-time.After(vmre.DefaultHandshakeTimeout):
		fmt.Println("host: handshake timeout")
	}
	// Output:
	// VM: host vmre speaks protocol version 1
	// host: VM at 127.0.0.1:40000 speaks protocol version 1
}
