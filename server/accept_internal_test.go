package server

import (
	"testing"

	"connectrpc.com/connect"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
)

// TestAcceptedCallToldAfterEnd replays by hand an interleaving that a test
// over HTTP cannot force: the launch ends (its VM died, and its host ended
// it) between the engine's acceptance of its Initialize and the handler's
// report of the call. The launch's OnCall must still hear of the accepted
// call: a host waits for that report once Initialized is closed.
func TestAcceptedCallToldAfterEnd(t *testing.T) {
	t.Parallel()
	e := New(Config{})
	t.Cleanup(e.Close)
	told := make(chan Call, 1)
	l, err := e.NewLaunch(LaunchConfig{Initializer: AcceptVersions("vmre", 1), OnCall: func(c Call) { told <- c }})
	if err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "127.0.0.1:9"})
	req.Header().Set("Authorization", "Bearer "+l.Token())

	hook, _, err := e.initialize(t.Context(), req) // the handler's first step
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Initialized():
	default:
		t.Fatal("Initialized is open after an accepted Initialize")
	}
	l.End()                            // the host's reaction to its VM's exit
	e.hooks.call(Call{Err: err}, hook) // the handler's report of the call
	select {
	case c := <-told:
		if !c.Accepted() {
			t.Errorf("OnCall was told %+v; want the accepted call", c)
		}
	default:
		t.Fatal("OnCall was not told of the accepted Initialize of a launch that ended right after it")
	}
}
