package launcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/internal/vmpeer"
)

// probeTimeout bounds a health probe whose context ends later.
const probeTimeout = 5 * time.Second

// Methods of a health probe (Health.Method).
const (
	// HealthGRPC: grpc.health.v1 Check of the whole server (service "").
	HealthGRPC = "grpc.health.v1"
	// HealthHTTP: a plain HTTP request, for a VM without a health service.
	HealthHTTP = "http"
)

// Health is the outcome of a health probe of a VM's server.
type Health struct {
	// Method is HealthGRPC, or HealthHTTP when the VM has no health
	// service.
	Method string
	// Protocol is what the VM's server speaks, for people: "gRPC over
	// h2c", "Connect (JSON) over HTTP/1.1", or with HealthHTTP only the
	// transport ("h2c", "HTTP/1.1"); "" when the server answered in none.
	Protocol string
	// Status is the answer: "serving", or what the HTTP request got.
	Status string
	// Elapsed is the time the probe took.
	Elapsed time.Duration
}

// ProbeHealth checks the health of the VM server at addr, with a client of
// its own, as `vmre run --check` does: grpc.health.v1 Check of the whole
// server (service ""), once, over gRPC with h2c when the VM's server speaks
// it, else over the Connect protocol (docs/VM-AUTHORS.md). A VM without a
// health service gets a plain HTTP request instead, over the transport its
// server answered, which proves only that the server answers. An answer
// other than serving, or none within ctx or 5 s, is an error that says
// what the VM answered and over what.
func ProbeHealth(ctx context.Context, addr string) (Health, error) {
	peer := vmpeer.New(addr)
	defer peer.Close()
	return probeHealth(ctx, peer)
}

// ProbeHealth is the package's ProbeHealth over the Runtime's own client,
// whose connection to the VM is open already.
func (r *Runtime) ProbeHealth(ctx context.Context) (Health, error) {
	return probeHealth(ctx, vmpeer.Over(r.status.Addr, r.HTTPClient(), r.HTTP2))
}

func probeHealth(ctx context.Context, peer *vmpeer.Peer) (Health, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()

	start := time.Now()
	var res *grpchealth.CheckResponse
	err := peer.Call(ctx, func(c connect.HTTPClient, opts ...connect.ClientOption) error {
		var err error
		res, err = grpchealth.NewClient(c, peer.URL(), opts...).Check(ctx, &grpchealth.CheckRequest{})
		return err
	})
	h := Health{Method: HealthGRPC, Elapsed: time.Since(start)}
	if peer.Protocol() != vmpeer.Unknown {
		h.Protocol = peer.Describe()
	}
	switch {
	case err == nil:
		h.Status = res.Status.String()
		if res.Status != grpchealth.StatusServing {
			return h, fmt.Errorf("the VM answers grpc.health.v1 Check over %s with %s", h.Protocol, h.Status)
		}
		return h, nil
	case errors.As(err, new(*vmpeer.NoProtocolError)):
		return h, fmt.Errorf("grpc.health.v1 Check: %w", err)
	case connect.CodeOf(err) != connect.CodeUnimplemented:
		return h, fmt.Errorf("grpc.health.v1 Check at %s over %s: %w", peer.URL(), h.Protocol, err)
	}

	transport := peer.Transport()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peer.URL()+"/", nil)
	if err != nil {
		return h, err
	}
	h.Method, h.Protocol = HealthHTTP, transport
	resp, err := peer.HTTPClient().Do(req)
	h.Elapsed = time.Since(start)
	if err != nil {
		return h, fmt.Errorf("the VM has no grpc.health.v1 service, and its server at %s does not answer HTTP over %s: %w", peer.URL(), transport, err)
	}
	resp.Body.Close()
	h.Status = fmt.Sprintf("answers HTTP over %s (status %d); it has no grpc.health.v1 service", transport, resp.StatusCode)
	return h, nil
}
