package main

import (
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre"
)

// connectJSON is the start of a curl command that calls a Connect unary
// method with a JSON body.
const connectJSON = "curl -s -X POST -H 'Content-Type: application/json' -d "

// logHints logs ready-to-paste curl commands for the node mux and the VM.
// They hold no double quotes, which the text handler would escape.
func logHints(log *slog.Logger, muxAddr, name, vm string, legacy bool) {
	log.Info("list the VMs: curl -s http://" + muxAddr + "/v1/vms")
	log.Info("check the engine: " + connectJSON + "'{}' http://" + muxAddr + "/grpc.health.v1.Health/Check")
	switch {
	case legacy:
		log.Info("the VM speaks gRPC (rpcchainvm); with reflection on: grpcurl -plaintext " + vm + " list")
	case isExampleVM(name):
		log.Info("call the VM: " + connectJSON + "'{}' http://" + vm + "/vmre.example.v1.ChainService/LastAccepted")
	default:
		log.Info("call the VM (Connect JSON; works when it serves connect-go): " + connectJSON + "'{}' http://" + vm + "/PACKAGE.SERVICE/METHOD")
	}
}

func isExampleVM(name string) bool {
	return strings.TrimSuffix(filepath.Base(name), ".exe") == "examplevm"
}

// remoteTokenHint is what the engine tells a VM whose token it does not
// know, on a node that enrolls remote VMs: the fix is the enrollment's
// current environment.
const remoteTokenHint = "a remote VM gets its current token from `vmre remote env NAME` on the node " +
	"(after `vmre remote rotate NAME`, only the new one works); a VM the node launched uses the one in " + vmre.EngineTokenKey
