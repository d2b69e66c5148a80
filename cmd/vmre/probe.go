package main

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

// probeTimeout bounds a health probe of a VM.
const probeTimeout = 5 * time.Second

// Probe methods.
const (
	probeGRPCHealth = "grpc.health.v1"
	probeHTTP       = "http"
)

// probeResult is the outcome of a health probe.
type probeResult struct {
	method string // probeGRPCHealth, or probeHTTP when the VM has no health service
	// protocol is what the VM's server speaks, for people: "gRPC over h2c",
	// "Connect (JSON) over HTTP/1.1", or with probeHTTP only the transport
	// ("h2c", "HTTP/1.1"); "" when the server answered in none of them.
	protocol string
	status   string
	elapsed  time.Duration
}

// probeAddr is probeVM of the VM's server at addr, with a client of its own.
func probeAddr(ctx context.Context, addr string) (probeResult, error) {
	peer := vmpeer.New(addr)
	defer peer.Close()
	return probeVM(ctx, peer)
}

// probeVM checks a VM's health: grpc.health.v1 Check of the whole server
// (service ""), once, over gRPC with h2c when the VM's server speaks it,
// else over the Connect protocol (docs/VM-AUTHORS.md). A VM without a
// health service gets a plain HTTP request instead, over the transport its
// server answered, which proves only that the server answers.
func probeVM(ctx context.Context, peer *vmpeer.Peer) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()

	start := time.Now()
	var res *grpchealth.CheckResponse
	err := peer.Call(ctx, func(c connect.HTTPClient, opts ...connect.ClientOption) error {
		var err error
		res, err = grpchealth.NewClient(c, peer.URL(), opts...).Check(ctx, &grpchealth.CheckRequest{})
		return err
	})
	r := probeResult{method: probeGRPCHealth, elapsed: time.Since(start)}
	if peer.Protocol() != vmpeer.Unknown {
		r.protocol = peer.Describe()
	}
	switch {
	case err == nil:
		r.status = res.Status.String()
		if res.Status != grpchealth.StatusServing {
			return r, fmt.Errorf("the VM answers grpc.health.v1 Check over %s with %s", r.protocol, r.status)
		}
		return r, nil
	case errors.As(err, new(*vmpeer.NoProtocolError)):
		return r, fmt.Errorf("grpc.health.v1 Check: %w", err)
	case connect.CodeOf(err) != connect.CodeUnimplemented:
		return r, fmt.Errorf("grpc.health.v1 Check at %s over %s: %w", peer.URL(), r.protocol, err)
	}

	transport := peer.Transport()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peer.URL()+"/", nil)
	if err != nil {
		return r, err
	}
	r.method, r.protocol = probeHTTP, transport
	resp, err := peer.HTTPClient().Do(req)
	r.elapsed = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("the VM has no grpc.health.v1 service, and its server at %s does not answer HTTP over %s: %w", peer.URL(), transport, err)
	}
	resp.Body.Close()
	r.status = fmt.Sprintf("answers HTTP over %s (status %d); it has no grpc.health.v1 service", transport, resp.StatusCode)
	return r, nil
}
