// Package peers benchmarks vmre against the runtimes a node could use
// instead, in one run: AvalancheGo's subprocess runtime (rpcchainvm) and
// hashicorp/go-plugin over gRPC, with the floor of plain os/exec beside
// them (docs/PERFORMANCE.md, "Peers"). It is a module of its own so that
// vmre's go.mod does not take their dependencies; run it with
// `make bench-peers`.
package peers
