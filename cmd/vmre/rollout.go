package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/node"
)

// The clients of a running node's rollouts: rollout, rollback and
// history.

const rolloutHead = `Usage: vmre rollout [flags] NAME

rollout reads the plugin directory of a running node again and rolls out
the new version of the VM NAME's file, then follows it to its end. The new
version must complete its handshake, answer its health probe and stay up
for its min-healthy time within its healthy deadline; else the VM goes back
to the version it ran, by itself, and rollout exits 1. A version that
failed its rollout before is refused unless --force. The flags left unset
take the node's (vmre node --rollout-strategy, --min-healthy, ...). The
other VMs' changes wait for the next reload (vmre reload).

`

const rollbackHead = `Usage: vmre rollback [flags] NAME

rollback rolls the VM NAME of a running node back to an earlier version of
its history (vmre history NAME): the one before the version it runs, or
--to DIGEST (its first digits will do), and follows the rollout to its end,
as vmre rollout does. A version that failed before, or, with pins, one the
pins file does not pin, is refused unless --force. The version rolled back
from is not rolled out again at a reload until its file's bytes change.

`

// rolloutOptions are the flags of rollout and rollback.
type rolloutOptions struct {
	force, noAutoRevert, noWait bool
	strategy                    strategyFlag
	minHealthy, deadline        time.Duration
}

func (o *rolloutOptions) register(fs *flag.FlagSet, force string) {
	fs.BoolVar(&o.force, "force", false, force)
	fs.Var(&o.strategy, "strategy", "`strategy` replace or start-first (default: the node's)")
	fs.DurationVar(&o.minHealthy, "min-healthy", 0, "how long the new version must stay up, answering its health probe (default: the node's)")
	fs.DurationVar(&o.deadline, "healthy-deadline", 0, "the time the new version has to be healthy (default: the node's)")
	fs.BoolVar(&o.noAutoRevert, "no-auto-revert", false, "keep the new version if it fails, instead of going back")
	fs.BoolVar(&o.noWait, "no-wait", false, "return once the rollout has begun; vmre ps shows how it goes")
}

func (o *rolloutOptions) validate(fs *flag.FlagSet, e env) int {
	for name, d := range map[string]time.Duration{"min-healthy": o.minHealthy, "healthy-deadline": o.deadline} {
		if d < 0 {
			return usagef(fs, e, "--%s %s: give a positive duration, such as 10s", name, d)
		}
	}
	return exitOK
}

// durations are the options' durations for a request: nil when unset.
func (o *rolloutOptions) durations() (minHealthy, deadline *durationpb.Duration) {
	if o.minHealthy > 0 {
		minHealthy = durationpb.New(o.minHealthy)
	}
	if o.deadline > 0 {
		deadline = durationpb.New(o.deadline)
	}
	return minHealthy, deadline
}

func (o *rolloutOptions) strategyProto() adminv1.RolloutStrategy {
	for _, s := range []adminv1.RolloutStrategy{adminv1.RolloutStrategy_ROLLOUT_STRATEGY_REPLACE, adminv1.RolloutStrategy_ROLLOUT_STRATEGY_START_FIRST} {
		if admin.Strategy(s) == o.strategy.s && o.strategy.s != 0 {
			return s
		}
	}
	return adminv1.RolloutStrategy_ROLLOUT_STRATEGY_UNSPECIFIED
}

func rolloutCommand(ctx context.Context, args []string, e env) int {
	var o rolloutOptions
	to := ""
	return rolloutClient(ctx, args, e, "rollout", rolloutHead, &o, func(fs *flag.FlagSet) {
		o.register(fs, "roll out a version that failed its rollout before, or that an operator rolled back from")
	}, func(ctx context.Context, c adminv1connect.AdminServiceClient, name string) (string, bool, *adminv1.Rollout, error) {
		minHealthy, deadline := o.durations()
		res, err := c.Rollout(ctx, connect.NewRequest(&adminv1.RolloutRequest{Name: name, Force: o.force, Strategy: o.strategyProto(),
			MinHealthy: minHealthy, HealthyDeadline: deadline, NoAutoRevert: o.noAutoRevert}))
		if err != nil {
			return "", false, nil, err
		}
		return res.Msg.GetMessage(), res.Msg.GetChanged(), res.Msg.GetRollout(), nil
	}, &to)
}

func rollbackCommand(ctx context.Context, args []string, e env) int {
	var o rolloutOptions
	to := ""
	return rolloutClient(ctx, args, e, "rollback", rollbackHead, &o, func(fs *flag.FlagSet) {
		fs.StringVar(&to, "to", "", "the `digest` of the version to go back to, or its first digits (default: the version before)")
		o.register(fs, "roll back to a version that failed before, or that the pins file does not pin")
	}, func(ctx context.Context, c adminv1connect.AdminServiceClient, name string) (string, bool, *adminv1.Rollout, error) {
		minHealthy, deadline := o.durations()
		res, err := c.Rollback(ctx, connect.NewRequest(&adminv1.RollbackRequest{Name: name, ToDigest: to, Force: o.force,
			Strategy: o.strategyProto(), MinHealthy: minHealthy, HealthyDeadline: deadline, NoAutoRevert: o.noAutoRevert}))
		if err != nil {
			return "", false, nil, err
		}
		return res.Msg.GetMessage(), res.Msg.GetChanged(), res.Msg.GetRollout(), nil
	}, &to)
}

// rolloutClient is rollout or rollback: it starts the rollout with call,
// then follows it to its end unless --no-wait.
func rolloutClient(ctx context.Context, args []string, e env, name, head string, o *rolloutOptions, register func(*flag.FlagSet),
	call func(context.Context, adminv1connect.AdminServiceClient, string) (string, bool, *adminv1.Rollout, error), to *string) int {
	var f clientFlags
	fs := newFlagSet(name)
	f.register(fs)
	register(fs)
	if err := parseFlags(fs, head, clientTail, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return usagef(fs, e, "want one NAME, the VM's name or alias (vmre ps lists them)")
	}
	if code := o.validate(fs, e); code != exitOK {
		return code
	}
	vm := fs.Arg(0)
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, name, err)
	}
	defer done()
	sig := catchSignals(ctx)
	defer sig.stop()
	callCtx, cancel := context.WithTimeout(sig.first, callTimeout)
	defer cancel()
	msg, changed, r, err := call(callCtx, c, vm)
	if err != nil {
		return rolloutFail(e, name, vm, *to, err)
	}
	fmt.Fprintln(e.stdout, e.textFor(e.stdout, false)(msg))
	if !changed || o.noWait || r == nil {
		return exitOK
	}
	verb := "rolled out"
	if name == "rollback" {
		verb = "rolled back"
	}
	return followRollout(sig.first, c, e, vm, verb, r)
}

// rolloutFail prints a rollout's or rollback's error with what to do: a
// refusal that --force overrides says so.
func rolloutFail(e env, cmd, vm, to string, err error) int {
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		hint := ""
		switch {
		case ce.Meta().Get(node.RefusalKey) == node.RefusedKnownBad && cmd == "rollout":
			hint = fmt.Sprintf("vmre rollout %s --force rolls it out all the same", vm)
		case ce.Meta().Get(node.RefusalKey) == node.RefusedKnownBad:
			hint = fmt.Sprintf("vmre rollback %s --to %s --force rolls back to it all the same", vm, to)
		case ce.Meta().Get(node.RefusalKey) == node.RefusedNotPinned:
			hint = fmt.Sprintf("vmre rollback %s --force runs it unpinned", vm)
		case ce.Code() == connect.CodeAborted:
			hint = "vmre ps shows how it goes"
		}
		if hint != "" {
			err = fmt.Errorf("%s (%s)", ce.Message(), hint) // refused: exit code 1
		}
	}
	return clientFail(e, cmd, err)
}

// followRollout watches the VM until its rollout r has ended, prints how
// it goes, and returns 0 when it succeeded, 1 otherwise.
func followRollout(ctx context.Context, c adminv1connect.AdminServiceClient, e env, name, verb string, r *adminv1.Rollout) int {
	stream, err := c.WatchVMs(ctx, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		return clientFail(e, "rollout", err)
	}
	defer stream.Close()
	p := progress{w: e.stdout, text: e.textFor(e.stdout, false), id: r.GetId(), started: time.Now(), verb: verb}
	if r.GetStartedAt() != nil {
		p.started = r.GetStartedAt().AsTime()
	}
	for stream.Receive() {
		vm := stream.Msg().GetVm()
		if vm.GetName() != name && !slices.Contains(vm.GetAliases(), name) || vm.GetRollout().GetId() != p.id {
			continue
		}
		if code, ended := p.show(vm); ended {
			return code
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(e.stderr, "vmre rollout: stopped following the rollout of %s; it goes on (vmre ps shows how)\n", name)
		return exitFailure
	}
	return clientFail(e, "rollout", fmt.Errorf("the node ended the watch of %s before its rollout ended: %w", name, stream.Err()))
}

// progress prints the changes of a rollout as they come.
type progress struct {
	w       io.Writer
	text    func(string) string // how the VMs' text is written (textFor)
	verb    string              // rolled out, rolled back
	id      uint64
	started time.Time
	state   adminv1.VMState
	pid     int32
	healthy bool
	seen    bool // a state of the VM came
	back    bool // rolled back: waiting for the old version to run again
}

// show prints what changed in vm's rollout, and, once it has ended, how,
// with the exit code.
func (p *progress) show(vm *adminv1.VM) (int, bool) {
	r := vm.GetRollout()
	at := func(format string, args ...any) {
		fmt.Fprintf(p.w, "%6.2fs  %s\n", time.Since(p.started).Seconds(), p.text(fmt.Sprintf(format, args...)))
	}
	to := short(r.GetToDigest())
	if p.back {
		return p.again(vm, at)
	}
	switch st := vm.GetState(); {
	case st == adminv1.VMState_VM_STATE_STARTING && p.state != st:
		at("launching %s", to)
	case st == adminv1.VMState_VM_STATE_RUNNING && vm.GetDigest() == r.GetToDigest() && (vm.GetPid() != p.pid || !p.seen):
		at("%s runs: pid %d, %s", to, vm.GetPid(), vm.GetAddr())
	}
	p.state, p.pid, p.seen = vm.GetState(), vm.GetPid(), true
	if r.GetHealthySince() != nil && !p.healthy {
		at("%s answers its health probe; healthy once it has answered for %s", to, r.GetMinHealthy().AsDuration())
	}
	p.healthy = r.GetHealthySince() != nil
	took := r.GetEndedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Round(time.Millisecond)
	switch r.GetPhase() {
	case adminv1.RolloutPhase_ROLLOUT_PHASE_SUCCEEDED:
		at("%s %s to %s in %s: %s, pid %d", p.verb, vm.GetName(), to, took, stateName(vm), vm.GetPid())
		return exitOK, true
	case adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLED_BACK:
		at("rolled back: %s failed after %s: %s", to, took, r.GetError())
		p.back = true
		return p.again(vm, at)
	case adminv1.RolloutPhase_ROLLOUT_PHASE_FAILED:
		at("rollout failed after %s: %s; %s keeps %s (--no-auto-revert)", took, r.GetError(), vm.GetName(), to)
		return exitFailure, true
	case adminv1.RolloutPhase_ROLLOUT_PHASE_INTERRUPTED:
		at("rollout interrupted after %s: %s; %s keeps %s", took, r.GetError(), vm.GetName(), short(r.GetFromDigest()))
		return exitFailure, true
	}
	return 0, false
}

// again waits, after a rollback, until the VM runs its old version again,
// and says so, or says why it does not.
func (p *progress) again(vm *adminv1.VM, at func(string, ...any)) (int, bool) {
	r := vm.GetRollout()
	switch vm.GetState() {
	case adminv1.VMState_VM_STATE_STARTING:
		return 0, false
	case adminv1.VMState_VM_STATE_RUNNING:
		if vm.GetDigest() != r.GetFromDigest() {
			return 0, false
		}
		at("%s runs %s again: pid %d; %s is not rolled out again until its bytes change (vmre history %s)",
			vm.GetName(), short(r.GetFromDigest()), vm.GetPid(), short(r.GetToDigest()), vm.GetName())
	default:
		at("%s is %s after the rollback: %s", vm.GetName(), stateName(vm), psLast(vm))
	}
	return exitFailure, true
}

const historyHead = `Usage: vmre history [flags] NAME

history lists the versions of the VM NAME of a running node, newest first:
their digest, when the node first found them and last ran them, and what
became of them (running, superseded, rolled back and why, ...). The node
keeps the last --keep-versions of each VM, with a copy of their bytes, for
vmre rollback.

`

func historyCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var asJSON bool
	fs := newFlagSet("history")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the versions as JSON, as the admin service's History answers")
	if err := parseFlags(fs, historyHead, clientTail, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return usagef(fs, e, "want one NAME, the VM's name or alias (vmre ps lists them)")
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "history", err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.History(ctx, connect.NewRequest(&adminv1.HistoryRequest{Name: fs.Arg(0)}))
	if err != nil {
		return clientFail(e, "history", err)
	}
	if asJSON {
		b, err := admin.JSON(res.Msg)
		if err != nil {
			return clientFail(e, "history", err)
		}
		e.stdout.Write(b)
		return exitOK
	}
	const stamp = "2006-01-02 15:04:05"
	text := e.textFor(e.stdout, false)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tFIRST SEEN\tBECAME CURRENT\tRESULT")
	for _, v := range res.Msg.GetVersions() {
		started := "-"
		if v.GetStartedAt() != nil {
			started = v.GetStartedAt().AsTime().Local().Format(stamp)
		}
		result := v.GetSummary()
		if !v.GetKept() {
			result += " (no copy kept)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", short(v.GetDigest()), v.GetFirstSeen().AsTime().Local().Format(stamp), started,
			text(strings.ReplaceAll(result, "\n", " ")))
	}
	tw.Flush()
	return exitOK
}

// rolloutState is what ps adds to a VM's STATE for its rollout: one in
// progress, or the last one when it did not succeed; "" for none.
func rolloutState(r *adminv1.Rollout) string {
	to := short(r.GetToDigest())
	switch r.GetPhase() {
	case adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_OUT:
		if r.GetHealthySince() != nil {
			left := time.Until(r.GetHealthySince().AsTime().Add(r.GetMinHealthy().AsDuration())).Round(100 * time.Millisecond)
			return fmt.Sprintf("rolling out %s, healthy in %s", to, max(left, 0))
		}
		return "rolling out " + to
	case adminv1.RolloutPhase_ROLLOUT_PHASE_ROLLED_BACK:
		return "rolled back from " + to
	case adminv1.RolloutPhase_ROLLOUT_PHASE_FAILED:
		return "rollout of " + to + " failed"
	}
	return ""
}

// short is a digest as people read it: its first 12 digits.
func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
