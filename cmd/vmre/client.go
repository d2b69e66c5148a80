package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
	"github.com/vmre/vmre/internal/h2c"
)

// The clients of a running node's admin service: ps, inspect, logs,
// events, stop, start, restart, reload and remote.

const clientTail = `The node is the one of --node, else of $VMRE_NODE (a URL such as
http://127.0.0.1:8080, or a node's name or pid), else the one running node
that left its address in $XDG_RUNTIME_DIR/vmre (vmre node and vmre run do).
With an admin token, the node's own file names its token file; give
another with --admin-token-file.

`

// clientFlags are the flags every client shares.
type clientFlags struct {
	node      string
	tokenFile string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.node, "node", "",
		"the node: its `URL` (http://127.0.0.1:8080), or its name or pid (default: $"+nodeEnv+", else the one running node)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "a `file` holding the node's admin token (default: the one the node's discovery file names)")
}

// client connects to the node's admin service.
func (f *clientFlags) client(e env) (adminv1connect.AdminServiceClient, func(), error) {
	t, err := chooseNode(f.node, e.getenv)
	if err != nil {
		return nil, nil, err
	}
	tokenFile := f.tokenFile
	if tokenFile == "" {
		tokenFile = t.tokenFile
	}
	var token string
	if tokenFile != "" {
		if warning := tokenPermsProblem(tokenFile); warning != "" {
			fmt.Fprintf(e.stderr, "vmre: warning: %s\n", warning)
		}
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, nil, &usageError{"--admin-token-file: " + err.Error()}
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, nil, &usageError{"--admin-token-file " + tokenFile + " is empty: give the file the node reads its token from"}
		}
	}
	hc := h2c.NewHTTP1Client()
	opts := []connect.ClientOption{}
	if token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(token)))
	}
	return adminv1connect.NewAdminServiceClient(hc, t.url, opts...), hc.CloseIdleConnections, nil
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

// callTimeout bounds a unary admin call: a stop waits for the VM's
// graceful timeout.
const callTimeout = 2 * time.Minute

// failure is a client's error for people: a sentence, the exit code, and
// the admin service's code for --json.
type failure struct {
	msg  string
	code int
	rpc  string // the Connect code, "" when the call was not made
}

// describeFailure turns a client's error into its sentence and exit code:
// the Connect code never starts the sentence; it is in the exit code and
// --json's output.
func describeFailure(err error) failure {
	if ue, ok := errors.AsType[*usageError](err); ok {
		return failure{msg: ue.msg, code: exitUsage}
	}
	if ne, ok := errors.AsType[*noNodeError](err); ok {
		return failure{msg: ne.Error(), code: exitUnavailable}
	}
	if nf, ok := errors.AsType[*vmNotFound](err); ok {
		return failure{msg: nf.Error(), code: exitNotFound, rpc: connect.CodeNotFound.String()}
	}
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		return failure{msg: err.Error(), code: exitFailure}
	}
	f := failure{msg: ce.Message(), code: exitFailure, rpc: ce.Code().String()}
	switch ce.Code() {
	case connect.CodeNotFound:
		f.code = exitNotFound
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		f.code = exitUnauthenticated
		f.msg += " (give the node's token with --admin-token-file FILE)"
	case connect.CodeUnavailable:
		f.code = exitUnavailable
		f.msg = "the node does not answer: " + f.msg + " (is it running? vmre node and vmre run print their address)"
	case connect.CodeDeadlineExceeded:
		f.msg = "the node did not answer in time: " + f.msg
	}
	return f
}

// clientFail prints a client's error for people, and returns its exit
// code.
func clientFail(e env, cmd string, err error) int { return reportFailure(e, cmd, err, false) }

// reportFailure prints a client's error for people on stderr and, with
// asJSON, as {"error": {...}} on stdout, and returns its exit code.
func reportFailure(e env, cmd string, err error, asJSON bool) int {
	f := describeFailure(err)
	fmt.Fprintf(e.stderr, "vmre %s: %s\n", cmd, textLines(e.textFor(e.stderr, false), f.msg)) // it may quote a VM's output
	if asJSON {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": f.rpc, "message": f.msg, "exit_code": f.code}})
		fmt.Fprintln(e.stdout, string(b))
	}
	return f.code
}

// parseArgs parses flags wherever they stand among the arguments, as
// docker does (vmre logs chainvm -f), and returns the arguments; those
// after "--" are all arguments.
func parseArgs(fs *flag.FlagSet, head, tail string, args []string, e env) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, head, tail, args, e); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
