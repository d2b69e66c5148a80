package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/vmre/vmre/admin"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const eventsHead = `Usage: vmre events [flags]

events prints the state of every VM of a running node, then each change of
a VM's state as it happens, one line each (time, VM, state, and its pid,
exit or error), and "gone" for a VM that left the node, as docker events
and kubectl get -w do, until Ctrl-C or the node's stop ("node stopped",
exit 0). --json prints each as the admin
service's WatchVMs sends it.

Examples:
  vmre events
  vmre events --json | jq -c 'select(.vm.state == "VM_STATE_CRASHLOOP") | .vm.name'

`

func eventsCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var asJSON, raw bool
	fs := newFlagSet("events")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print each change as a JSON line: the VM in the fields of ps --json, and gone")
	fs.BoolVar(&raw, "raw", false, "write names and errors as they are, control bytes too, even to a terminal")
	pos, err := parseArgs(fs, eventsHead, clientTail+clientCodesHelp, args, e)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usagef(fs, e, "unexpected argument %q: events shows every VM", pos[0])
	}
	c, done, err := f.client(e)
	if err != nil {
		return reportFailure(e, "events", err, asJSON)
	}
	defer done()
	sig := catchSignals(ctx)
	defer sig.stop()
	stream, err := c.WatchVMs(sig.first, connect.NewRequest(&adminv1.WatchVMsRequest{}))
	if err != nil {
		return reportFailure(e, "events", err, asJSON)
	}
	defer stream.Close()
	text := e.textFor(e.stdout, raw)
	color := e.color(e.stdout)
	for stream.Receive() {
		vm := stream.Msg().GetVm()
		if asJSON {
			b, _ := admin.JSONLine(stream.Msg())
			e.stdout.Write(b)
			continue
		}
		state := stateName(vm)
		if stream.Msg().GetGone() {
			state = "gone" // it left the node: its file or declaration left the directory
		}
		if color {
			state = colorState(state)
		}
		fmt.Fprintf(e.stdout, "%s  %s  %s%s\n", vm.GetSince().AsTime().Local().Format(timeLayout),
			text(displayName(vm)), state, text(eventDetail(vm)))
	}
	switch err := stream.Err(); {
	case sig.first.Err() != nil: // Ctrl-C
	case err != nil:
		return reportFailure(e, "events", err, asJSON)
	default:
		fmt.Fprintln(e.stderr, "vmre events: node stopped")
	}
	return exitOK
}

// eventDetail is what an events line adds to a VM's state: its pid, its
// backoff, its rollout, its exit or error.
func eventDetail(vm *adminv1.VM) string {
	var parts []string
	if vm.GetPid() != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", vm.GetPid()))
	}
	if vm.GetBackoff() != nil {
		parts = append(parts, fmt.Sprintf("attempt %d, next in %s", vm.GetAttempt(), vm.GetBackoff().AsDuration().Round(time.Millisecond)))
	}
	if r := rolloutState(vm.GetRollout()); r != "" {
		parts = append(parts, r)
	}
	if vm.GetState() != adminv1.VMState_VM_STATE_RUNNING {
		if last := psLast(vm); last != "-" {
			parts = append(parts, last)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "; ")
}
