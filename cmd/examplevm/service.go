package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
)

// maxRequestBytes caps a request message before it is decoded: a full
// block's data plus room for the envelope. Larger requests get
// resource_exhausted; data between 1 MiB and this gets invalid_argument.
const maxRequestBytes = 4 * maxDataBytes

// chainService serves examplev1connect.ChainServiceHandler over a chain.
type chainService struct {
	chain *chain
	log   *slog.Logger
}

var _ examplev1connect.ChainServiceHandler = (*chainService)(nil)

// newHandler returns the VM's HTTP handler: ChainService and grpc.health.v1
// (reporting ChainService and the whole server as serving, or as not
// serving when unhealthy) on their gRPC paths.
func newHandler(c *chain, log *slog.Logger, unhealthy bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(examplev1connect.NewChainServiceHandler(&chainService{chain: c, log: log},
		connect.WithReadMaxBytes(maxRequestBytes)))
	checker := grpchealth.NewStaticChecker(examplev1connect.ChainServiceName)
	if unhealthy {
		checker.SetStatus("", grpchealth.StatusNotServing)
		checker.SetStatus(examplev1connect.ChainServiceName, grpchealth.StatusNotServing)
	}
	mux.Handle(grpchealth.NewHandler(checker, connect.WithReadMaxBytes(maxRequestBytes)))
	return mux
}

func (s *chainService) BuildBlock(ctx context.Context, req *connect.Request[examplev1.BuildBlockRequest]) (*connect.Response[examplev1.BuildBlockResponse], error) {
	b, err := s.chain.Build(req.Msg.GetData())
	if err != nil {
		return nil, connectError(err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "block built", slog.Uint64("height", b.Height),
		slog.String("id", b.ID), slog.Int("bytes", len(b.Data)))
	return connect.NewResponse(&examplev1.BuildBlockResponse{Block: toProto(b)}), nil
}

func (s *chainService) GetBlock(_ context.Context, req *connect.Request[examplev1.GetBlockRequest]) (*connect.Response[examplev1.GetBlockResponse], error) {
	b, err := s.chain.Get(req.Msg.GetHeight())
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&examplev1.GetBlockResponse{Block: toProto(b)}), nil
}

func (s *chainService) LastAccepted(context.Context, *connect.Request[examplev1.LastAcceptedRequest]) (*connect.Response[examplev1.LastAcceptedResponse], error) {
	return connect.NewResponse(&examplev1.LastAcceptedResponse{Block: toProto(s.chain.LastAccepted())}), nil
}

// connectError gives the chain's errors their Connect codes.
func connectError(err error) error {
	switch {
	case errors.Is(err, errDataTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, errBlockNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	default:
		return connect.NewError(connect.CodeInternal, err)
	}
}

func toProto(b block) *examplev1.Block {
	return &examplev1.Block{
		Height:      b.Height,
		Id:          b.ID,
		ParentId:    b.ParentID,
		Data:        b.Data,
		TimestampMs: b.Time.UnixMilli(),
	}
}
