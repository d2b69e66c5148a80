// Command gopluginvm is the least plugin of hashicorp/go-plugin that serves
// gRPC: go-plugin's own services, its grpc.health.v1 among them.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/vmre/vmre/bench/peers/internal/pingplugin"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pingplugin.Handshake,
		Plugins:         pingplugin.Plugins,
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
