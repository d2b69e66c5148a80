// Command avagovm is the least VM of AvalancheGo's subprocess runtime
// (rpcchainvm): rpcchainvm.Serve of a VM that implements nothing but
// Shutdown, which a node calls before SIGTERM. rpcchainvm.Serve registers
// grpc.health.v1 beside the VM's service, which the benchmarks call.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ava-labs/avalanchego/snow/engine/snowman/block"
	"github.com/ava-labs/avalanchego/vms/rpcchainvm"
)

// vm is a ChainVM whose methods, but Shutdown, nothing calls here.
type vm struct{ block.ChainVM }

func (vm) Shutdown(context.Context) error { return nil }

func main() {
	if err := rpcchainvm.Serve(context.Background(), vm{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
