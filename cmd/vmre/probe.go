package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/internal/h2c"
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
	method  string // probeGRPCHealth, or probeHTTP when the VM has no health service
	status  string
	elapsed time.Duration
}

// probeVM checks a VM's health at addr: grpc.health.v1 Check of the whole
// server over gRPC (h2c), which connect-go and grpc-go servers answer alike.
// A VM without a health service gets a plain HTTP request instead, which
// proves only that its server answers.
func probeVM(ctx context.Context, addr string) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	httpClient := h2c.NewClient()
	defer httpClient.CloseIdleConnections()

	start := time.Now()
	health := grpchealth.NewClient(httpClient, "http://"+addr, connect.WithGRPC())
	res, err := health.Check(ctx, &grpchealth.CheckRequest{})
	r := probeResult{method: probeGRPCHealth, elapsed: time.Since(start)}
	switch {
	case err == nil:
		r.status = res.Status.String()
		if res.Status != grpchealth.StatusServing {
			return r, fmt.Errorf("the VM answers grpc.health.v1 Check with %s", r.status)
		}
		return r, nil
	case connect.CodeOf(err) != connect.CodeUnimplemented:
		return r, fmt.Errorf("grpc.health.v1 Check at %s: %w", addr, err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return r, err
	}
	r.method = probeHTTP
	resp, err := httpClient.Do(req)
	r.elapsed = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("the VM has no grpc.health.v1 service, and its server at %s does not answer HTTP/2: %w", addr, err)
	}
	resp.Body.Close()
	r.status = fmt.Sprintf("answers HTTP (status %d); it has no grpc.health.v1 service", resp.StatusCode)
	return r, nil
}
