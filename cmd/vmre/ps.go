package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const psHead = `Usage: vmre ps [flags]

ps lists the VMs of a running node, as docker ps lists containers:

  NAME      its first alias when it has one, else its ID (cut at 20
            characters with an ellipsis; --no-trunc shows it whole)
  STATE     running, starting, backoff, crashloop, unhealthy, stopped,
            exited, failed, ... (coloured on a terminal unless NO_COLOR)
  PID, UPTIME, RESTARTS (those its restart policy made)
  LAST EXIT the error of a VM that fails, else how its last run ended
  DIGEST    the SHA-256 of the bytes it runs, short

VMs an operator stopped, and those whose file left the plugin directory
once they no longer run, show with -a only; a removed VM that runs on
(vmre node --keep-removed) shows as "removed (running)".

--format takes a Go template, executed for each VM, with the fields
.Name .ID .Aliases .State .Pid .Addr .Uptime .Restarts .LastExit .Error
.Digest .Pinned .Remote .Removed .Pending .Rollout; --json prints ListVMs'
answer.

Examples:
  vmre ps
  vmre ps -a --no-trunc
  vmre ps -q | xargs vmre restart
  vmre ps --format '{{.Name}} {{.State}} {{.Pid}}'

`

// psRow is one VM, as ps prints it and --format sees it.
type psRow struct {
	Name     string // first alias, else ID
	ID       string
	Aliases  []string
	State    string
	Pid      int
	Addr     string
	Uptime   string
	Restarts int
	LastExit string // the current error of a failing VM, else its last exit
	Error    string
	Digest   string
	Pinned   bool
	Remote   bool
	Removed  bool
	Pending  string
	Rollout  string // a rollout in progress, or the last one when it did not succeed
}

func psCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var all, quiet, asJSON, noTrunc, raw bool
	var format string
	fs := newFlagSet("ps")
	f.register(fs)
	fs.BoolVar(&all, "a", false, "show every VM: those stopped by an operator and those whose file left the directory too")
	fs.BoolVar(&all, "all", false, "as -a")
	fs.BoolVar(&quiet, "q", false, "print the names only, one a line (whole, as the other commands take them)")
	fs.BoolVar(&quiet, "quiet", false, "as -q")
	fs.StringVar(&format, "format", "", "print each VM with a Go `template`, such as '{{.Name}} {{.State}}'")
	fs.BoolVar(&asJSON, "json", false, "print the VMs as JSON, as the admin service's ListVMs answers")
	fs.BoolVar(&noTrunc, "no-trunc", false, "do not cut long VM IDs")
	fs.BoolVar(&raw, "raw", false, "write names as they are, control bytes too, even to a terminal")
	pos, err := parseArgs(fs, psHead, clientTail+clientCodesHelp, args, e)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usagef(fs, e, "unexpected argument %q: ps takes no NAME (vmre inspect NAME shows one VM)", pos[0])
	}
	var tmpl *template.Template
	if format != "" {
		if tmpl, err = template.New("format").Parse(format); err != nil {
			return usagef(fs, e, "--format: %v", err)
		}
	}
	c, done, err := f.client(e)
	if err != nil {
		return reportFailure(e, "ps", err, asJSON)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		return reportFailure(e, "ps", err, asJSON)
	}
	if asJSON {
		b, err := admin.JSON(res.Msg)
		if err != nil {
			return clientFail(e, "ps", err)
		}
		e.stdout.Write(b)
		return exitOK
	}
	text := e.textFor(e.stdout, raw)
	var rows []psRow
	for _, vm := range res.Msg.GetVms() {
		if all || listed(vm) {
			rows = append(rows, newPsRow(vm))
		}
	}
	switch {
	case quiet:
		for _, r := range rows {
			fmt.Fprintln(e.stdout, text(r.Name))
		}
	case tmpl != nil:
		for _, r := range rows {
			r = r.escaped(text)
			var b strings.Builder
			if err := tmpl.Execute(&b, r); err != nil {
				return usagef(fs, e, "--format: %v", err)
			}
			fmt.Fprintln(e.stdout, b.String())
		}
	default:
		var cells [][]string
		for _, r := range rows {
			r = r.escaped(text)
			name := r.Name
			if !noTrunc {
				name = truncate(name, nameWidth)
			}
			pid := "-"
			switch {
			case r.Pid != 0:
				pid = strconv.Itoa(r.Pid)
			case r.Remote:
				pid = "remote"
			}
			cells = append(cells, []string{name, psState(r), pid, r.Uptime, strconv.Itoa(r.Restarts), r.LastExit, shortDigest(r.Digest)})
		}
		var style func(int, string) string
		if e.color(e.stdout) {
			style = func(col int, cell string) string {
				if col == 1 {
					return colorState(cell)
				}
				return cell
			}
		}
		table(e.stdout, []string{"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "DIGEST"}, cells, style, "")
	}
	return exitOK
}

// listed reports whether ps lists vm without -a: not when an operator
// stopped it, nor when its file left the plugin directory and it no longer
// runs; a removed VM that runs on (--keep-removed) is listed, marked
// removed, for a process that runs is never hidden.
func listed(vm *adminv1.VM) bool {
	switch vm.GetState() {
	case adminv1.VMState_VM_STATE_STOPPED:
		return false
	case adminv1.VMState_VM_STATE_EXITED, adminv1.VMState_VM_STATE_FAILED:
		return !vm.GetRemoved()
	}
	return true
}

// newPsRow is a VM's row.
func newPsRow(vm *adminv1.VM) psRow {
	r := psRow{Name: displayName(vm), ID: vm.GetName(), Aliases: vm.GetAliases(), State: stateName(vm),
		Pid: int(vm.GetPid()), Addr: vm.GetAddr(), Uptime: "-", Restarts: int(vm.GetRestarts()), LastExit: psLast(vm),
		Error: vm.GetError(), Digest: vm.GetDigest(), Pinned: vm.GetPinned(), Remote: vm.GetRemote(),
		Removed: vm.GetRemoved(), Pending: vm.GetPending(), Rollout: rolloutState(vm.GetRollout())}
	if r.Aliases == nil {
		r.Aliases = []string{}
	}
	if vm.GetStartedAt() != nil && vm.GetState() == adminv1.VMState_VM_STATE_RUNNING {
		r.Uptime = humanDuration(time.Since(vm.GetStartedAt().AsTime()))
	}
	if b := vm.GetBackoff(); b != nil {
		r.Pending = strings.TrimPrefix(r.Pending+fmt.Sprintf(", attempt %d, next in %s", vm.GetAttempt(),
			time.Until(vm.GetNextAttempt().AsTime()).Round(100*time.Millisecond)), ", ")
	}
	return r
}

// psState is a VM's STATE in ps: its state, removed for a VM whose file
// left the plugin directory, what it waits for (its backoff, a changed
// file) and its rollout.
func psState(r psRow) string {
	state := r.State
	if r.Removed {
		state = "removed (" + state + ")"
	}
	var more []string
	for _, s := range []string{r.Pending, r.Rollout} {
		if s != "" {
			more = append(more, s)
		}
	}
	if len(more) > 0 {
		state += " (" + strings.Join(more, ", ") + ")"
	}
	return state
}

// colorState colours a STATE cell as systemctl does: green running, red
// failing or back from a failed rollout, yellow on the way or rolling out.
func colorState(cell string) string {
	const green, red, yellow, reset = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
	state, _, _ := strings.Cut(cell, " ")
	switch {
	case strings.Contains(cell, "rolled back from") || strings.Contains(cell, "rollout of "):
		return red + cell + reset // the VM's new version failed its rollout: it asks for a look
	case strings.Contains(cell, "rolling out"):
		return yellow + cell + reset
	}
	switch state {
	case "running":
		return green + cell + reset
	case "failed", "crashloop", "lost", "unhealthy":
		return red + cell + reset
	case "starting", "backoff", "waiting":
		return yellow + cell + reset
	}
	return cell
}

// psLast is a VM's LAST EXIT in ps: for a VM that fails, the error of its
// latest attempt (a launch that failed before the VM ran, or a refused
// handshake), or for an unhealthy VM its failed liveness probes; else how
// its last run ended.
func psLast(vm *adminv1.VM) string {
	first, _, _ := strings.Cut(vm.GetError(), "\n")
	switch vm.GetState() {
	case adminv1.VMState_VM_STATE_FAILED, adminv1.VMState_VM_STATE_CRASHLOOP, adminv1.VMState_VM_STATE_BACKOFF,
		adminv1.VMState_VM_STATE_UNHEALTHY:
		if first != "" {
			return first
		}
	}
	if ex := vm.GetLastExit(); ex != nil {
		return ex.GetSummary()
	}
	if first != "" {
		return first
	}
	return "-"
}

const inspectHead = `Usage: vmre inspect [flags] NAME...

inspect prints the whole record of each VM named (by its ID or an alias), as
the admin service's GetVM answers, in a JSON array: state, pid, address,
protocol version, start, handshake time, launches and restarts, backoff,
last exit, error, digest and pin, aliases.

Example:
  vmre inspect chainvm | jq '.[0].last_exit'

`

func inspectCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	fs := newFlagSet("inspect")
	f.register(fs)
	names, err := parseArgs(fs, inspectHead, clientTail+clientCodesHelp, args, e)
	if err != nil {
		return flagExit(err)
	}
	if len(names) == 0 {
		return usagef(fs, e, "want a NAME, the VM's name or alias (vmre ps lists them)")
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "inspect", err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	code := exitOK
	var out []string
	for _, name := range names {
		res, err := c.GetVM(ctx, connect.NewRequest(&adminv1.GetVMRequest{Name: name}))
		if err != nil {
			code = max(code, clientFail(e, "inspect", notFound(ctx, c, name, err)))
			continue
		}
		b, err := admin.JSON(res.Msg.GetVm())
		if err != nil {
			return clientFail(e, "inspect", err)
		}
		out = append(out, strings.TrimRight(indent(string(b)), "\n"))
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "[]")
		return code
	}
	fmt.Fprintf(e.stdout, "[\n%s\n]\n", strings.Join(out, ",\n"))
	return code
}

// indent indents every line of s by two spaces.
func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("  " + line)
	}
	return b.String()
}
