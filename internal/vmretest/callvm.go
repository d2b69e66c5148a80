package vmretest

import (
	"context"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"

	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	"github.com/vmre/vmre/tlspin"
)

// CallVM is the body of a helper process that plays the node's side of a
// remote VM: it calls the example chain's LastAccepted at addr over TLS,
// pinned to the certificate the VM announced (certSHA256, package
// tlspin), with opts (the protocol), and prints "block ID". It returns
// the process's exit code: 0, 1 when the call fails, 2 for a bad pin.
func CallVM(addr, certSHA256 string, opts ...connect.ClientOption) int {
	c, err := tlspin.NewClient(certSHA256, tlspin.Pings{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.CloseIdleConnections()
	chain := examplev1connect.NewChainServiceClient(c, "https://"+addr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := chain.LastAccepted(ctx, connect.NewRequest(&examplev1.LastAcceptedRequest{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("block", res.Msg.GetBlock().GetId())
	return 0
}
