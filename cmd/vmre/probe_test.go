package main

import (
	"strings"
	"testing"

	"github.com/vmre/vmre/launcher"
)

// A failed health probe's cause names the protocol the VM speaks, and its
// fix names Go libraries for a Go VM only; a VM that answered in no
// protocol is told what to serve. (launcher's TestProbeHealth checks the
// probe itself.)
func TestHealthFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		res   launcher.Health
		cause string
	}{
		{"speaks Connect", launcher.Health{Method: launcher.HealthGRPC, Protocol: "Connect (JSON) over HTTP/1.1"},
			"which speaks Connect (JSON) over HTTP/1.1"},
		{"answers nothing", launcher.Health{Method: launcher.HealthGRPC},
			"answers neither gRPC over HTTP/2 without TLS (h2c) nor the Connect protocol over HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause, fix := healthFailure(tc.res, false)
			if !strings.Contains(cause, tc.cause) {
				t.Errorf("cause %q, want it to contain %q", cause, tc.cause)
			}
			if strings.Contains(fix, "connectrpc.com") || !strings.Contains(fix, "docs/VM-AUTHORS.md") {
				t.Errorf("fix for a VM that is not Go: %q", fix)
			}
			if _, goFix := healthFailure(tc.res, true); tc.res.Protocol != "" && !strings.Contains(goFix, "connectrpc.com/grpchealth") {
				t.Errorf("fix for a Go VM: %q", goFix)
			}
		})
	}
}
