package server

import (
	"time"

	"connectrpc.com/connect"
)

// Call is one call to an engine: an Initialize or a Lease, native or legacy,
// accepted or refused.
type Call struct {
	// Procedure is the method called, such as
	// "/vmre.runtime.v1.RuntimeService/Initialize".
	Procedure string
	// Protocol is the RPC protocol of the call: "connect", "grpc" or "grpcweb".
	Protocol string
	// Peer is the caller's address.
	Peer string
	// Addr and ProtocolVersion are what an Initialize announced; empty for
	// a Lease.
	Addr            string
	ProtocolVersion uint
	// Err is why the engine refused the call, nil when it accepted it. It
	// is a *connect.Error; a version mismatch unwraps to a
	// *vmre.VersionMismatchError.
	Err error
	// Elapsed is the time the engine took to answer.
	Elapsed time.Duration
}

// Accepted reports whether the engine accepted the call.
func (c Call) Accepted() bool { return c.Err == nil }

// Code is the Connect code of the refusal, or 0 when the call was accepted.
func (c Call) Code() connect.Code {
	if c.Err == nil {
		return 0
	}
	return connect.CodeOf(c.Err)
}

// Result is "ok" for an accepted call, else the refusal's code as Connect
// spells it ("unauthenticated", "failed_precondition"): a label for metrics.
func (c Call) Result() string {
	if c.Err == nil {
		return "ok"
	}
	return c.Code().String()
}

// Hooks are the events of an engine, in the style of
// net/http/httptrace.ClientTrace: every field is optional, and each is
// called synchronously on the goroutine that serves the call, so it must be
// fast and must not block. A nil field costs nothing.
type Hooks struct {
	// Call is called for every call to the engine, accepted or refused,
	// before its answer is written. Unlike the engine's log, it is never
	// rate-limited. A call whose token matches a launch is also reported to
	// that launch's own LaunchConfig.OnCall.
	Call func(Call)
}

// call reports c to the engine's hook and to the launch's, when set.
func (h *Hooks) call(c Call, launch func(Call)) {
	if h != nil && h.Call != nil {
		h.Call(c)
	}
	if launch != nil {
		launch(c)
	}
}
