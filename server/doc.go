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
// Both kinds of launch are a Handshake: the host waits on Initialized,
// reads Result, and calls End. AcceptVersions is the usual version check.
// Hooks tell the host of every call, accepted or refused, as typed values;
// the engine's log is for people, not for code.
//
// The package knows HTTP and tokens, not processes: package launcher starts
// the VM and waits on the launch. docs/PROTOCOL.md is the wire
// specification.
package server
