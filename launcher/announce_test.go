package launcher_test

import (
	"context"
	"net"

	"github.com/vmre/vmre/client"
)

// initializeListening completes the handshake of a test VM that serves
// nothing: it announces a loopback listener of its own, where the host can
// connect (Launch does before it answers), and which stays open for the
// process's life.
func initializeListening(ctx context.Context) (*client.Host, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return client.Initialize(ctx, ln.Addr().String())
}
