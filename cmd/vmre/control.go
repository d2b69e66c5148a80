package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
)

// controlCommand is stop, start or restart of VMs: several by name, or
// all of them, at once, as systemctl does; each one's line comes in the
// order named.
func controlCommand(name, what string, timeout bool, call func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string, timeout *durationpb.Duration) (string, error)) func(context.Context, []string, env) int {
	return func(ctx context.Context, args []string, e env) int {
		var f clientFlags
		var all bool
		var grace optDuration
		fs := newFlagSet(name)
		f.register(fs)
		fs.BoolVar(&all, "all", false, "every VM of the node")
		if timeout {
			fs.Var(&grace, "timeout", "give each VM at most this `duration` between SIGTERM and SIGKILL, such as 2s (0: SIGKILL at once; "+
				"default and longest: the node's --graceful-timeout)")
		}
		head := "Usage: vmre " + name + " [flags] NAME...\n       vmre " + name + " [flags] --all\n\n" + name + " " + what + "\n\n" +
			"Examples:\n  vmre " + name + " chainvm\n  vmre " + name + " chainvm evm\n  vmre " + name + " --all\n\n"
		names, err := parseArgs(fs, head, clientTail+clientCodesHelp, args, e)
		if err != nil {
			return flagExit(err)
		}
		switch {
		case all && len(names) > 0:
			return usagef(fs, e, "give NAMEs or --all, not both")
		case !all && len(names) == 0:
			return usagef(fs, e, "want a NAME, the VM's name or alias (vmre ps lists them), or --all")
		}
		var t *durationpb.Duration
		if grace.set {
			t = durationpb.New(grace.d)
		}
		c, done, err := f.client(e)
		if err != nil {
			return clientFail(e, name, err)
		}
		defer done()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if all {
			vms, err := listVMs(ctx, c)
			if err != nil {
				return clientFail(e, name, err)
			}
			for _, vm := range vms {
				names = append(names, vm.GetName())
			}
		}
		type outcome struct {
			msg string
			err error
		}
		out := make([]outcome, len(names))
		var wg sync.WaitGroup
		for i, vm := range names {
			wg.Go(func() {
				msg, err := call(ctx, c, vm, t)
				out[i] = outcome{msg, notFound(ctx, c, vm, err)}
			})
		}
		wg.Wait()
		code := exitOK
		for _, o := range out {
			if o.err != nil {
				code = max(code, clientFail(e, name, o.err))
				continue
			}
			fmt.Fprintln(e.stdout, o.msg)
		}
		return code
	}
}

var (
	stopCommand = controlCommand("stop", "stops VMs of a running node (SIGTERM, then SIGKILL after the graceful timeout) and cancels their pending restarts; "+
		"they stay stopped, across a restart of the node too, until started.", true,
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string, timeout *durationpb.Duration) (string, error) {
			res, err := c.StopVM(ctx, connect.NewRequest(&adminv1.StopVMRequest{Name: vm, Timeout: timeout}))
			if err != nil {
				return "", err
			}
			return res.Msg.GetMessage(), nil
		})
	startCommand = controlCommand("start", "launches stopped, exited or failed VMs of a running node, or at once those that wait in a backoff.", false,
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string, _ *durationpb.Duration) (string, error) {
			res, err := c.StartVM(ctx, connect.NewRequest(&adminv1.StartVMRequest{Name: vm}))
			if err != nil {
				return "", err
			}
			if !res.Msg.GetChanged() {
				return res.Msg.GetMessage(), nil // "NAME is running already: nothing to start"
			}
			return startedText(res.Msg.GetMessage(), res.Msg.GetVm()), nil
		})
	restartCommand = controlCommand("restart", "stops VMs of a running node and launches them again (now, during a backoff).", true,
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string, timeout *durationpb.Duration) (string, error) {
			res, err := c.RestartVM(ctx, connect.NewRequest(&adminv1.RestartVMRequest{Name: vm, Timeout: timeout}))
			if err != nil {
				return "", err
			}
			return startedText(res.Msg.GetMessage(), res.Msg.GetVm()), nil
		})
)

// optDuration is a duration flag that may be left unset.
type optDuration struct {
	d   time.Duration
	set bool
}

func (o *optDuration) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.d.String()
}

func (o *optDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return err
	case d < 0:
		return fmt.Errorf("%s: give a duration of 0 or more, such as 2s", s)
	}
	o.d, o.set = d, true
	return nil
}

// startedText is the line of start and restart: the answer and the VM's
// state, with its pid when the node runs its process (a remote VM's
// process is not the node's).
func startedText(message string, vm *adminv1.VM) string {
	if vm.GetPid() == 0 {
		return fmt.Sprintf("%s: %s", message, stateName(vm))
	}
	return fmt.Sprintf("%s: %s, pid %d", message, stateName(vm), vm.GetPid())
}
