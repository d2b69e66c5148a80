// Command vmre is the VM Runtime Engine's command line. Its commands:
//
//   - `vmre run PLUGIN` launches one VM plugin and serves the node mux
//     until interrupted; `--check` is a smoke test (handshake, health
//     probe, stop).
//   - `vmre node --plugin-dir DIR` runs every VM of a plugin directory
//     under supervision (aliases, pins, restart policies, liveness probes,
//     remote VMs over TLS) and serves the node mux and the admin service;
//     `vmre reload` (or SIGHUP) reloads the directory.
//   - `vmre serve` runs a bare engine for a VM started by hand or in a
//     debugger.
//   - `vmre doctor PLUGIN` launches a plugin once and diagnoses each phase
//     of its launch.
//   - `vmre ps`, `vmre inspect NAME`, `vmre logs [-f] NAME`, `vmre events`,
//     `vmre stop NAME`, `vmre start NAME`, `vmre restart NAME` and
//     `vmre reload` observe and control a running node through its admin
//     service, as docker, systemctl and nomad users expect
//     (docs/OPERATIONS.md).
//   - `vmre completion bash|zsh|fish` prints a shell's completion script.
//   - `vmre rollout NAME`, `vmre rollback NAME` and `vmre history NAME`
//     roll a VM's new version out (health-gated, rolled back by itself when
//     it fails), go back to an earlier one, and list them.
//   - `vmre remote env|systemd|k8s|rotate NAME` hands a VM on another host
//     what it needs to reach a running node, and rotates its token.
//   - `vmre version` prints vmre's version, protocol version and Go
//     version.
//
// The node itself is package node: this command parses flags, calls it
// and prints. Run `vmre --help` for the commands and their exit codes,
// and `vmre COMMAND --help` for a command's flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/vmre/vmre/sandbox"
)

// env is what a command reads from and writes to besides its arguments.
type env struct {
	stdout io.Writer // results only: serve's variables, doctor's report, version
	stderr io.Writer // logs, usage errors
	getenv func(string) string
	// terminal reports whether w is a terminal (default: isTerminal), for
	// colours and the escaping of control bytes; tests inject it.
	terminal func(w io.Writer) bool
}

// isTTY reports whether w is a terminal, as the env tells.
func (e env) isTTY(w io.Writer) bool {
	if e.terminal != nil {
		return e.terminal(w)
	}
	return isTerminal(w)
}

// color reports whether output to w may be coloured: a terminal, and no
// NO_COLOR (no-color.org).
func (e env) color(w io.Writer) bool { return e.isTTY(w) && e.getenv("NO_COLOR") == "" }

// A command runs with its arguments and returns the exit code.
type command struct {
	name    string
	usage   string // the synopsis after "vmre "
	summary string
	run     func(ctx context.Context, args []string, e env) int
}

// commands are vmre's commands, in the order --help lists them; set in
// init, as completion reads them.
var commands []command

func init() {
	commands = []command{
		{"run", "run [flags] PLUGIN [ARGS...]", "launch a VM plugin and serve the node mux until interrupted", runCommand},
		{"node", "node --plugin-dir DIR [flags]", "run every VM of a plugin directory under supervision and serve the node mux", nodeCommand},
		{"serve", "serve [flags]", "run a bare engine for a VM started by hand or in a debugger", serveCommand},
		{"doctor", "doctor [flags] PLUGIN [ARGS...]", "launch a plugin once and diagnose each phase of its launch", doctorCommand},
		{"ps", "ps [-a] [-q] [--format TEMPLATE] [--json]", "list the VMs of a running node", psCommand},
		{"inspect", "inspect NAME...", "print the whole record of VMs of a running node, as JSON", inspectCommand},
		{"logs", "logs [-f] [-n N] [--since D|TIME] [-t] NAME", "print, and follow, the log records of a VM of a running node", logsCommand},
		{"events", "events [--json]", "stream the changes of state of a running node's VMs until Ctrl-C", eventsCommand},
		{"stop", "stop [--timeout D] NAME...|--all", "stop VMs of a running node", stopCommand},
		{"start", "start NAME...|--all", "start stopped VMs of a running node", startCommand},
		{"restart", "restart [--timeout D] NAME...|--all", "restart VMs of a running node", restartCommand},
		{"reload", "reload [--json]", "reload a running node's plugin directory, aliases and pins", reloadCommand},
		{"rollout", "rollout [--force] [--strategy S] NAME", "roll out the new version of a VM's file, health-gated, reverted by itself if it fails", rolloutCommand},
		{"rollback", "rollback [--to DIGEST] NAME", "roll a VM back to an earlier version", rollbackCommand},
		{"history", "history [--json] NAME", "list the versions of a VM and what became of them", historyCommand},
		{"remote", "remote env|systemd|k8s|rotate [flags] NAME", "hand a remote VM what it needs to reach a running node (docs/REMOTE.md)", remoteCommand},
		{"completion", "completion bash|zsh|fish", "print a shell's completion script for vmre", completionCommand},
		{"version", "version", "print vmre's version, protocol version and Go version", versionCommand},
	}
}

func main() {
	sandbox.Init() // a sandboxed VM's launch re-executes vmre as its init step
	os.Exit(vmreMain(context.Background(), os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
}

// vmreMain dispatches to a command and returns the exit code.
func vmreMain(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		printMainUsage(e.stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		printMainUsage(e.stdout)
		return exitOK
	case "--version", "-version":
		return versionCommand(ctx, rest, e)
	case "help":
		if len(rest) == 0 {
			printMainUsage(e.stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, rest, e)
		}
	}
	fmt.Fprintf(e.stderr, "vmre: unknown command %q\nRun 'vmre --help' for the commands.\n", name)
	return exitUsage
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `vmre is a VM Runtime Engine: it launches VM plugins as subprocesses, completes
their handshake, pipes their logs and stops them cleanly.

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  vmre %s\n      %s\n", c.usage, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  vmre run ./bin/examplevm                 launch the example VM; Ctrl-C stops it
  vmre run --check ./bin/examplevm         handshake, health probe, stop: a smoke test
  vmre node --plugin-dir ./plugins         run a directory of VMs, restarting them as --restart says
  vmre doctor ./bin/examplevm              why does my plugin not start?
  vmre serve                               print an engine address and token for a debugger
  vmre ps -a                               every VM of the running node, stopped ones too
  vmre logs -f -n 20 chainvm               the last 20 records of a VM, then each new one
  vmre reload                              reload the node's plugin directory

Run 'vmre COMMAND --help' (or 'vmre help COMMAND') for a command's flags.

`+exitCodesHelp+clientCodesHelp)
}
