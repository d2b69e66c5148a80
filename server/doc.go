// Package server is the engine: the Connect handlers of the handshake, the
// registry of pending launches keyed by token, and helpers to serve them.
//
// An Engine answers vmre.runtime.v1.RuntimeService over the Connect, gRPC
// and gRPC-Web protocols, together with grpc.health.v1 and server
// reflection. Mount Engine.Handler in any mux, or serve it on its own
// loopback listener with Serve. Each launch gets its own single-use token
// from Engine.NewLaunch.
//
// The legacy handshake of rpcchainvm plugins, which carries no token, is
// served by a LegacyListener: one loopback listener per launch that lives
// only until the handshake.
//
// The package knows HTTP and tokens, not processes: package launcher starts
// the VM and waits on the launch.
package server
