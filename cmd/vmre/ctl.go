package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/h2c"
)

// The clients of a running node's admin service: ps, stop, start,
// restart and logs.

const clientTail = `The node is the one named by --node, else the one running node that left
its address in $XDG_RUNTIME_DIR/vmre (vmre node and vmre run do). With an
admin token, give its file with --admin-token-file, unless the node's own
file says where it is.

`

// clientFlags are the flags every client shares.
type clientFlags struct {
	node      string
	tokenFile string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.node, "node", "", "the node's `URL`, such as http://127.0.0.1:8080 (default: the one running node)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "a `file` holding the node's admin token")
}

// client connects to the node's admin service.
func (f *clientFlags) client(e env) (adminv1connect.AdminServiceClient, func(), error) {
	url, tokenFile := f.node, f.tokenFile
	if url == "" {
		nf, err := findNode(e.getenv)
		if err != nil {
			return nil, nil, err
		}
		url = nf.URL
		if tokenFile == "" {
			tokenFile = nf.TokenFile
		}
	}
	var token string
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, nil, fmt.Errorf("--admin-token-file %s is empty: give the file the node reads its token from", tokenFile)
		}
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	hc := h2c.NewHTTP1Client()
	opts := []connect.ClientOption{}
	if token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(token)))
	}
	return adminv1connect.NewAdminServiceClient(hc, strings.TrimRight(url, "/"), opts...), hc.CloseIdleConnections, nil
}

// bearer adds the admin token to every call.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// clientFail prints a client's error with what to do, and returns 1.
func clientFail(e env, cmd string, err error) int {
	msg := err.Error()
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated:
		msg += " (give the node's token with --admin-token-file)"
	case connect.CodeUnavailable:
		msg += " (is the node running? vmre node and vmre run print their address)"
	}
	fmt.Fprintf(e.stderr, "vmre %s: %s\n", cmd, msg)
	return exitFailure
}

// callTimeout bounds a unary admin call: a stop waits for the VM's
// graceful timeout.
const callTimeout = 2 * time.Minute

func psCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var asJSON bool
	fs := newFlagSet("ps")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the VMs as JSON, as the admin service's ListVMs answers")
	head := "Usage: vmre ps [flags]\n\nps lists the VMs of a running node: name, state, pid, address, uptime,\nrestarts and how its last run ended.\n\n"
	if err := parseFlags(fs, head, clientTail, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usagef(fs, e, "unexpected argument %q", fs.Arg(0))
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "ps", err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		return clientFail(e, "ps", err)
	}
	if asJSON {
		b, err := admin.JSON(res.Msg)
		if err != nil {
			return clientFail(e, "ps", err)
		}
		e.stdout.Write(b)
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tADDR\tUPTIME\tRESTARTS\tLAST EXIT")
	for _, vm := range res.Msg.GetVms() {
		pid, addr, uptime := "-", "-", "-"
		if vm.GetRemote() {
			pid = "remote"
		}
		if vm.GetPid() != 0 {
			pid = fmt.Sprint(vm.GetPid())
		}
		if vm.GetAddr() != "" {
			addr = vm.GetAddr()
		}
		if vm.GetStartedAt() != nil {
			uptime = time.Since(vm.GetStartedAt().AsTime()).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", vm.GetName(), psState(vm), pid, addr, uptime, vm.GetRestarts(), psLast(vm))
	}
	tw.Flush()
	return exitOK
}

// psState is a VM's STATE in ps: its state, removed for a VM whose file
// left the plugin directory, its backoff, and a pending change.
func psState(vm *adminv1.VM) string {
	state := stateName(vm)
	if vm.GetRemoved() {
		state = "removed (" + state + ")"
	}
	if vm.GetBackoff() != nil {
		state += fmt.Sprintf(" (attempt %d, next in %s)", vm.GetAttempt(),
			time.Until(vm.GetNextAttempt().AsTime()).Round(100*time.Millisecond))
	}
	if p := vm.GetPending(); p != "" {
		state += ", " + p
	}
	return state + rolloutState(vm.GetRollout())
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

// controlCommand is stop, start or restart of one VM.
func controlCommand(name, what string, call func(context.Context, adminv1connect.AdminServiceClient, string) (string, error)) func(context.Context, []string, env) int {
	return func(ctx context.Context, args []string, e env) int {
		var f clientFlags
		fs := newFlagSet(name)
		f.register(fs)
		head := "Usage: vmre " + name + " [flags] NAME\n\n" + name + " " + what + "\n\n"
		if err := parseFlags(fs, head, clientTail, args, e); err != nil {
			return flagExit(err)
		}
		if fs.NArg() != 1 {
			return usagef(fs, e, "want one NAME, the VM's name or alias (vmre ps lists them)")
		}
		c, done, err := f.client(e)
		if err != nil {
			return clientFail(e, name, err)
		}
		defer done()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		msg, err := call(ctx, c, fs.Arg(0))
		if err != nil {
			return clientFail(e, name, err)
		}
		fmt.Fprintln(e.stdout, msg)
		return exitOK
	}
}

var (
	stopCommand = controlCommand("stop", "stops a VM of a running node (SIGTERM, then SIGKILL after the graceful timeout) and cancels its pending restart.",
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string) (string, error) {
			res, err := c.StopVM(ctx, connect.NewRequest(&adminv1.StopVMRequest{Name: vm}))
			if err != nil {
				return "", err
			}
			return res.Msg.GetMessage(), nil
		})
	startCommand = controlCommand("start", "launches a stopped, exited or failed VM of a running node, or at once one that waits in a backoff.",
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string) (string, error) {
			res, err := c.StartVM(ctx, connect.NewRequest(&adminv1.StartVMRequest{Name: vm}))
			if err != nil {
				return "", err
			}
			return startedText(res.Msg.GetMessage(), res.Msg.GetVm()), nil
		})
	restartCommand = controlCommand("restart", "stops a VM of a running node and launches it again (now, during a backoff).",
		func(ctx context.Context, c adminv1connect.AdminServiceClient, vm string) (string, error) {
			res, err := c.RestartVM(ctx, connect.NewRequest(&adminv1.RestartVMRequest{Name: vm}))
			if err != nil {
				return "", err
			}
			return startedText(res.Msg.GetMessage(), res.Msg.GetVm()), nil
		})
)

// startedText is the line of start and restart: the answer and the VM's
// state, with its pid when the node runs its process (a remote VM's
// process is not the node's).
func startedText(message string, vm *adminv1.VM) string {
	if vm.GetPid() == 0 {
		return fmt.Sprintf("%s: %s", message, stateName(vm))
	}
	return fmt.Sprintf("%s: %s, pid %d", message, stateName(vm), vm.GetPid())
}

func stateName(vm *adminv1.VM) string {
	return strings.ToLower(strings.TrimPrefix(vm.GetState().String(), "VM_STATE_"))
}

func logsCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var follow, asJSON bool
	var since time.Duration
	fs := newFlagSet("logs")
	f.register(fs)
	fs.BoolVar(&follow, "f", false, "follow: keep printing the VM's new records until interrupted")
	fs.DurationVar(&since, "since", 0, "print only the records of this last `duration` of the backlog, such as 10m")
	fs.BoolVar(&asJSON, "json", false, "print each record as a JSON line")
	head := "Usage: vmre logs [-f] [--since D] [flags] NAME\n\nlogs prints the recent log records of a VM of a running node (the node keeps\na bounded backlog of each VM's records, at the node's --log-level), and\nwith -f follows it.\n\n"
	if err := parseFlags(fs, head, clientTail, args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return usagef(fs, e, "want one NAME, the VM's name or alias (vmre ps lists them)")
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "logs", err)
	}
	defer done()
	sig := catchSignals(ctx)
	defer sig.stop()
	req := &adminv1.TailLogsRequest{Name: fs.Arg(0), Follow: follow}
	if since > 0 {
		req.Since = durationpb.New(since)
	}
	stream, err := c.TailLogs(sig.first, connect.NewRequest(req))
	if err != nil {
		return clientFail(e, "logs", err)
	}
	defer stream.Close()
	for stream.Receive() {
		printRecord(e.stdout, stream.Msg(), asJSON)
	}
	if err := stream.Err(); err != nil && sig.first.Err() == nil {
		return clientFail(e, "logs", err)
	}
	return exitOK
}

// printRecord prints one log record, as text or JSON.
func printRecord(w io.Writer, m *adminv1.TailLogsResponse, asJSON bool) {
	r := m.GetRecord()
	if asJSON {
		b, _ := protojson.Marshal(m)
		fmt.Fprintln(w, string(b))
		return
	}
	if n := m.GetDroppedBefore(); n > 0 {
		fmt.Fprintf(w, "... %d records missed: this reader was too slow\n", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %s %s", r.GetTime().AsTime().Local().Format("15:04:05.000"), r.GetLevel(), r.GetStream(), r.GetMessage())
	for _, a := range r.GetAttrs() {
		v := a.GetValue()
		if strings.ContainsAny(v, " \"=") {
			q, _ := json.Marshal(v)
			v = string(q)
		}
		fmt.Fprintf(&b, " %s=%s", a.GetKey(), v)
	}
	fmt.Fprintln(w, b.String())
}
