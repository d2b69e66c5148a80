package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vmre/vmre/tlspin"
)

// EndCause is why the lease of an Enrollment's session ended: on the VM's
// side (it shut down, its connection answered no ping, or the connection
// failed), or on the node's (its operator stopped or restarted it, its
// token was rotated, its enrollment removed, the node shut down).
type EndCause int

// The causes of a session's end.
const (
	EndUnknown EndCause = iota
	// EndVMShutdown: the VM ended its lease, or its connection: it shut
	// down, or its process ended.
	EndVMShutdown
	// EndPingTimeout: the VM's connection answered no ping in time, and
	// the engine closed it: the link is cut, or the VM's host is gone.
	EndPingTimeout
	// EndLinkError: the connection failed: reset, unreachable, or data
	// left unacknowledged for the ping's time (TCP_USER_TIMEOUT).
	EndLinkError
	// EndOperatorStop: the node's operator stopped the VM (Admit(false)).
	EndOperatorStop
	// EndOperatorRestart: the node's operator restarted it (EndSession).
	EndOperatorRestart
	// EndTokenRotated: its token was rotated (Rotate).
	EndTokenRotated
	// EndRemoved: its enrollment was removed (Close).
	EndRemoved
	// EndNodeShutdown: the node is shutting down (Shutdown, Engine.Close,
	// or the end of ServeTLS).
	EndNodeShutdown
)

var endCauseNames = [...]string{"unknown", "vm_shutdown", "ping_timeout", "link_error", "operator_stop",
	"operator_restart", "token_rotated", "removed", "node_shutdown"}

// String is the cause as a label, such as "ping_timeout".
func (c EndCause) String() string {
	if c < 0 || int(c) >= len(endCauseNames) {
		return fmt.Sprintf("EndCause(%d)", int(c))
	}
	return endCauseNames[c]
}

// ByNode reports whether the node ended the session, rather than the VM
// or the link.
func (c EndCause) ByNode() bool { return c >= EndOperatorStop }

// Restarts reports whether the node ended the session for the VM to be
// started again: the VM's lease then ends with the error aborted, and a VM
// on client.Serve exits with code 75.
func (c EndCause) Restarts() bool {
	return c == EndOperatorRestart || c == EndTokenRotated || c == EndNodeShutdown
}

// sessionEndText is what the node says of a session it ended.
var sessionEndText = map[EndCause]string{
	EndOperatorStop:    "its operator stopped the VM",
	EndOperatorRestart: "its operator restarted the VM",
	EndTokenRotated:    "the VM's token was rotated",
	EndRemoved:         "the VM's enrollment was removed",
	EndNodeShutdown:    "the node is shutting down",
}

// endError is the Err of a session's end event: ErrSessionEnded for the
// node's causes, with which one; the VM's side and the link's otherwise.
func endError(cause EndCause, detail error, pings Pings) error {
	switch cause {
	case EndPingTimeout:
		p := pings.withDefaults()
		return fmt.Errorf("ping timeout: the VM's connection was silent for %s and answered no ping within %s: the link is cut, or the VM's host is gone", p.Interval, p.Timeout)
	case EndLinkError:
		return fmt.Errorf("link error: the connection to the VM failed: %w", detail)
	case EndVMShutdown:
		if detail != nil {
			return fmt.Errorf("VM shutdown: the VM ended its lease (it shut down, or its process ended): %w", detail)
		}
		return errors.New("VM shutdown: the VM ended its lease (it shut down, or its process ended)")
	}
	if text, ok := sessionEndText[cause]; ok {
		return fmt.Errorf("%w: %s", ErrSessionEnded, text)
	}
	return fmt.Errorf("the lease ended: %w", detail)
}

// vmSideEnd classifies the end of a lease that the node did not end: ctx
// is the lease's request context, sendErr the failure of a keep-alive (or
// nil). The connection's own record (ServeTLS) tells a ping timeout, a
// failed link and a VM that closed its end apart.
func vmSideEnd(ctx context.Context, sendErr error) (EndCause, Pings, error) {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	if tc == nil {
		if sendErr != nil {
			return EndLinkError, Pings{}, sendErr
		}
		return EndVMShutdown, Pings{}, nil
	}
	readErr, closedHere := tc.ending()
	switch {
	case tc.ln.closing.Load():
		return EndNodeShutdown, tc.ln.pings, nil
	case readErr == nil && closedHere:
		return EndPingTimeout, tc.ln.pings, nil
	case readErr == nil && sendErr == nil, errors.Is(readErr, io.EOF):
		// The VM canceled its lease's stream, or closed its connection.
		return EndVMShutdown, tc.ln.pings, nil
	case readErr == nil:
		return EndLinkError, tc.ln.pings, sendErr
	}
	return EndLinkError, tc.ln.pings, readErr
}

// withDefaults are the pings with their zero values replaced.
func (p Pings) withDefaults() Pings {
	if p.Interval <= 0 {
		return Pings(tlspin.DefaultPings)
	}
	if p.Timeout <= 0 {
		p.Timeout = p.Interval
	}
	return p
}
