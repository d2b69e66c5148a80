package client_test

import (
	"net/http"
	"strings"
	"sync"

	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/server"
)

// leaseWatch tells when the engine has granted a lease: granted closes at
// the first accepted Lease call of the launch it watches.
type leaseWatch struct {
	once    sync.Once
	granted chan struct{}
}

func newLeaseWatch() *leaseWatch { return &leaseWatch{granted: make(chan struct{})} }

// onCall is the launch's server.LaunchConfig.OnCall.
func (lw *leaseWatch) onCall(c server.Call) {
	if c.Procedure == runtimev1connect.RuntimeServiceLeaseProcedure && c.Accepted() {
		lw.once.Do(func() { close(lw.granted) })
	}
}

// withoutLease answers Lease with 404, as an engine that predates the lease
// would; Connect clients read that as unimplemented.
func withoutLease(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Lease") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
