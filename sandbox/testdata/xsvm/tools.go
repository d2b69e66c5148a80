//go:build tools

// Package xsvm pins the modules of xsvm, AvalancheGo's example rpcchainvm
// plugin, which the sandbox's tests run as a VM that nobody here wrote:
//
//	go build -o xsvm github.com/ava-labs/avalanchego/vms/example/xsvm/cmd/xsvm
package xsvm

import _ "github.com/ava-labs/avalanchego/vms/example/xsvm/cmd/xsvm"
