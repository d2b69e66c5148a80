package admin

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/supervise"
)

// Rollouts are a node's rollouts of new versions of its VMs: the admin
// service's Rollout, Rollback and History, each for a VM that the service
// has found by its name or alias (name). Their errors are the Connect
// errors to answer.
type Rollouts interface {
	Rollout(ctx context.Context, name string, req *adminv1.RolloutRequest) (*adminv1.RolloutResponse, error)
	Rollback(ctx context.Context, name string, req *adminv1.RollbackRequest) (*adminv1.RollbackResponse, error)
	History(ctx context.Context, name string) (*adminv1.HistoryResponse, error)
}

// errNoRollouts is the answer of a node without versions.
var errNoRollouts = connect.NewError(connect.CodeUnimplemented,
	errors.New("this node has no plugin directory, whose VMs have versions to roll out (vmre run); vmre node --plugin-dir has"))

func (h handler) Rollout(ctx context.Context, req *connect.Request[adminv1.RolloutRequest]) (*connect.Response[adminv1.RolloutResponse], error) {
	if h.s.rollouts == nil {
		return nil, errNoRollouts
	}
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	res, err := h.s.rollouts.Rollout(ctx, vm.Name, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (h handler) Rollback(ctx context.Context, req *connect.Request[adminv1.RollbackRequest]) (*connect.Response[adminv1.RollbackResponse], error) {
	if h.s.rollouts == nil {
		return nil, errNoRollouts
	}
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	res, err := h.s.rollouts.Rollback(ctx, vm.Name, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (h handler) History(ctx context.Context, req *connect.Request[adminv1.HistoryRequest]) (*connect.Response[adminv1.HistoryResponse], error) {
	if h.s.rollouts == nil {
		return nil, errNoRollouts
	}
	vm, err := h.s.lookup(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	res, err := h.s.rollouts.History(ctx, vm.Name)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

var rolloutPhases = map[supervise.RolloutPhase]adminv1.RolloutPhase{
	supervise.RolloutInProgress:  adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_OUT,
	supervise.RolloutSucceeded:   adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED,
	supervise.RolloutReverted:    adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLED_BACK,
	supervise.RolloutFailed:      adminv1.RolloutPhase_ROLLOUT_PHASE_FAILED,
	supervise.RolloutInterrupted: adminv1.RolloutPhase_ROLLOUT_PHASE_INTERRUPTED,
}

var strategies = map[supervise.Strategy]adminv1.RolloutStrategy{
	supervise.Replace:    adminv1.RolloutStrategy_ROLLOUT_STRATEGY_REPLACE,
	supervise.StartFirst: adminv1.RolloutStrategy_ROLLOUT_STRATEGY_START_FIRST,
}

// RolloutView is the admin API's view of a rollout.
func RolloutView(r supervise.RolloutStatus) *adminv1.Rollout {
	p := &adminv1.Rollout{
		Id:           r.ID,
		Phase:        rolloutPhases[r.Phase],
		Strategy:     strategies[r.Strategy],
		FromDigest:   r.From,
		ToDigest:     r.To,
		StartedAt:    timestamppb.New(r.Started),
		MinHealthy:   durationpb.New(r.MinHealthy),
		Deadline:     optionalTime(r.Deadline),
		HealthySince: optionalTime(r.HealthySince),
		EndedAt:      optionalTime(r.Ended),
	}
	if r.Err != nil {
		p.Error = r.Err.Error()
	}
	return p
}

// Strategy is the supervisor's strategy of the API's; 0 for unspecified.
func Strategy(s adminv1.RolloutStrategy) supervise.Strategy {
	for k, v := range strategies {
		if v == s {
			return k
		}
	}
	return 0
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
