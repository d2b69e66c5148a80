package bench

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/launcher"
)

// firstCallProtocols are the RPC protocols of BenchmarkFirstCall.
var firstCallProtocols = []struct {
	name string
	opts []connect.ClientOption
	// fresh is the HTTP client a node would make for the protocol.
	fresh func() *http.Client
}{
	{"grpc", []connect.ClientOption{connect.WithGRPC()}, h2c.NewClient},
	{"connect", nil, h2c.NewHTTP1Client},
}

// BenchmarkFirstCall is the first RPC a host makes to a VM once Launch has
// returned: a grpc.health.v1 Check of the minimal VM, over gRPC and over the
// Connect protocol. The launch is outside the timed part; the call starts
// right after it, as a node's would.
//
// FirstCall/PROTOCOL/fresh makes the call with a new client: gRPC over h2c,
// Connect over HTTP/1.1, each dialling its connection.
// FirstCall/PROTOCOL/runtime makes it with the Runtime's client, whose
// first connection Launch made; runtime-no-warm-up the same, to the VM run
// without client.Serve's warm-up (client.WithoutWarmUp).
func BenchmarkFirstCall(b *testing.B) {
	for _, p := range firstCallProtocols {
		b.Run(p.name+"/fresh", func(b *testing.B) {
			firstCall(b, p.opts, func(*launcher.Runtime) (*http.Client, func()) {
				c := p.fresh()
				return c, c.CloseIdleConnections
			})
		})
		runtimeClient := func(rt *launcher.Runtime) (*http.Client, func()) { return rt.HTTPClient(), func() {} }
		b.Run(p.name+"/runtime", func(b *testing.B) { firstCall(b, p.opts, runtimeClient) })
		b.Run(p.name+"/runtime-no-warm-up", func(b *testing.B) { firstCall(b, p.opts, runtimeClient, "-no-warm-up") })
	}
}

// firstCall times, per op, a health check with the client that client
// returns for a VM just launched with args, and the function that closes it.
func firstCall(b *testing.B, opts []connect.ClientOption, client func(*launcher.Runtime) (*http.Client, func()), args ...string) {
	h := newVMRE(b, launcher.Config{})
	for b.Loop() {
		b.StopTimer()
		rt, err := h.l.Launch(context.Background(), exec.Command(h.path, args...))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c, done := client(rt)
		err = check(c, rt.Status().Addr, opts)
		b.StopTimer()
		done()
		if serr := h.stop(rt); serr != nil {
			b.Fatal(serr)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// check calls grpc.health.v1 Check on the server at addr.
func check(c connect.HTTPClient, addr string, opts []connect.ClientOption) error {
	res, err := grpchealth.NewClient(c, "http://"+addr, opts...).Check(context.Background(), &grpchealth.CheckRequest{})
	if err == nil && res.Status != grpchealth.StatusServing {
		return fmt.Errorf("health check: %v", res.Status)
	}
	return err
}
