package node

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/supervise"
)

// RefusalKey is the metadata key of a Connect error by which the admin
// service's Rollout and Rollback say why they refused a version that
// force would roll out: RefusedKnownBad or RefusedNotPinned.
const RefusalKey = "Vmre-Refused"

// The values of RefusalKey.
const (
	RefusedKnownBad  = "known-bad"
	RefusedNotPinned = "not-pinned"
)

// rolloutsAPI is the admin service's Rollouts of the node.
type rolloutsAPI struct{ n *Node }

func (a rolloutsAPI) Rollout(ctx context.Context, name string, req *adminv1.RolloutRequest) (*adminv1.RolloutResponse, error) {
	opts := options(req.GetForce(), req.GetStrategy(), req.GetMinHealthy().AsDuration(), req.GetHealthyDeadline().AsDuration(), req.GetNoAutoRevert())
	res, err := a.n.Rollout(ctx, name, opts)
	if err != nil {
		return nil, rolloutError(err)
	}
	vm, r, err := a.outcome(ctx, name, res, req.GetWait())
	if err != nil {
		return nil, err
	}
	return &adminv1.RolloutResponse{Vm: vm, Changed: res.ID != 0, Message: res.Message, Rollout: r}, nil
}

func (a rolloutsAPI) Rollback(ctx context.Context, name string, req *adminv1.RollbackRequest) (*adminv1.RollbackResponse, error) {
	opts := options(req.GetForce(), req.GetStrategy(), req.GetMinHealthy().AsDuration(), req.GetHealthyDeadline().AsDuration(), req.GetNoAutoRevert())
	res, err := a.n.Rollback(ctx, name, req.GetToDigest(), opts)
	if err != nil {
		return nil, rolloutError(err)
	}
	vm, r, err := a.outcome(ctx, name, res, req.GetWait())
	if err != nil {
		return nil, err
	}
	return &adminv1.RollbackResponse{Vm: vm, Changed: res.ID != 0, Message: res.Message, Rollout: r}, nil
}

func (a rolloutsAPI) History(_ context.Context, name string) (*adminv1.HistoryResponse, error) {
	versions, err := a.n.History(name)
	if err != nil {
		return nil, rolloutError(err)
	}
	out := &adminv1.HistoryResponse{Name: name}
	for _, v := range versions {
		p := &adminv1.Version{Digest: v.Digest, File: v.File, Pinned: v.Pinned, FirstSeen: timestamppb.New(v.FirstSeen),
			Result: versionResults[v.Result], Reason: v.Reason, Since: timestamppb.New(v.Since), Kept: v.Kept, Summary: v.Summary()}
		if !v.Started.IsZero() {
			p.StartedAt = timestamppb.New(v.Started)
		}
		out.Versions = append(out.Versions, p)
	}
	return out, nil
}

var versionResults = map[string]adminv1.VersionResult{
	ResultPending:     adminv1.VersionResult_VERSION_RESULT_PENDING,
	ResultRollingOut:  adminv1.VersionResult_VERSION_RESULT_ROLLING_OUT,
	ResultRunning:     adminv1.VersionResult_VERSION_RESULT_RUNNING,
	ResultSuperseded:  adminv1.VersionResult_VERSION_RESULT_SUPERSEDED,
	ResultRolledBack:  adminv1.VersionResult_VERSION_RESULT_ROLLED_BACK,
	ResultFailed:      adminv1.VersionResult_VERSION_RESULT_FAILED,
	ResultInterrupted: adminv1.VersionResult_VERSION_RESULT_INTERRUPTED,
}

// options are the RolloutOptions of a request.
func options(force bool, strategy adminv1.RolloutStrategy, minHealthy, deadline time.Duration, noAutoRevert bool) RolloutOptions {
	return RolloutOptions{Force: force, Strategy: admin.Strategy(strategy), MinHealthy: minHealthy, HealthyDeadline: deadline,
		NoAutoRevert: noAutoRevert}
}

// outcome is the VM and its rollout after an operator's rollout: as it
// ended, with wait, else as it is now.
func (a rolloutsAPI) outcome(ctx context.Context, name string, res RolloutResult, wait bool) (*adminv1.VM, *adminv1.Rollout, error) {
	var r *adminv1.Rollout
	if res.ID != 0 && wait {
		st, err := a.n.WaitRollout(ctx, name, res.ID)
		if err != nil {
			return nil, nil, rolloutError(err)
		}
		r = admin.RolloutView(st)
	}
	vm, ok := a.n.sup.Get(name)
	if !ok {
		return nil, nil, connect.NewError(connect.CodeNotFound, errors.New("the VM left the node"))
	}
	switch {
	case r != nil || res.ID == 0:
	case vm.Rollout != nil && vm.Rollout.ID == res.ID:
		r = admin.RolloutView(*vm.Rollout)
	default: // it has not begun yet: the VM's launch in progress ends first
		r = &adminv1.Rollout{Id: res.ID, Phase: adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_OUT, FromDigest: res.From, ToDigest: res.To}
	}
	return a.n.admin.View(vm), r, nil
}

// rolloutError is the Connect error of a rollout's or rollback's error.
func rolloutError(err error) error {
	code := connect.CodeFailedPrecondition
	refused := ""
	switch {
	case errors.Is(err, supervise.ErrUnknownVM), errors.Is(err, ErrNoVersion):
		code = connect.CodeNotFound
	case errors.Is(err, ErrKnownBad):
		refused = RefusedKnownBad
	case errors.Is(err, ErrNotPinned):
		refused = RefusedNotPinned
	case errors.Is(err, supervise.ErrRolloutInProgress):
		code = connect.CodeAborted
	case errors.Is(err, ErrNotRunning), errors.Is(err, supervise.ErrClosed):
		code = connect.CodeUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, vmre.ErrInvalidConfig):
		code = connect.CodeFailedPrecondition
	}
	cerr := connect.NewError(code, err)
	if refused != "" {
		cerr.Meta().Set(RefusalKey, refused)
	}
	return cerr
}
