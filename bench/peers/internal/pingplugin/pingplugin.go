// Package pingplugin is the go-plugin side that both the benchmark's host
// and its plugin (gopluginvm) name: the handshake and one gRPC plugin that
// serves nothing but go-plugin's own services (its grpc.health.v1 among
// them), so that the first call is the same health check for every peer.
package pingplugin

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the handshake the host and the plugin agree on.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "VMRE_BENCH_PLUGIN",
	MagicCookieValue: "ping",
}

// Name is the plugin's name in the plugin set.
const Name = "ping"

// Plugins is the plugin set of the host and the plugin.
var Plugins = plugin.PluginSet{Name: &Plugin{}}

// Plugin registers no service of its own: go-plugin's server has its
// health service, which the benchmarks call.
type Plugin struct{ plugin.Plugin }

// GRPCServer registers nothing.
func (*Plugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

// GRPCClient returns the connection.
func (*Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}
