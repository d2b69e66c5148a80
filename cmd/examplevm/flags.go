package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/vmre/vmre"
)

// config is what the command line sets.
type config struct {
	protocolVersion uint
	logLevel        slog.Level
	noHandshake     bool
	unhealthy       bool
	exitAfter       time.Duration
}

const usageHead = `Usage: examplevm [flags]

examplevm is the example VM plugin of vmre: a tiny in-memory chain served as
vmre.example.v1.ChainService (Connect, gRPC and gRPC-Web on one h2c port),
with grpc.health.v1. It is a plugin: a host starts it, for example

    vmre run [vmre flags] examplevm [examplevm flags]

and passes it the engine's address and a token in ` + vmre.EngineAddressKey + `
and ` + vmre.EngineTokenKey + `. To run it by hand or in a debugger, start
` + "`vmre serve`" + `, export the two lines it prints, then start examplevm.

It logs JSON to stderr, stops gracefully on SIGTERM or SIGINT (exit 0),
and exits 2 on a usage error or when started without the host's variables.

Flags:
`

const usageHint = "Run 'examplevm --help' for its flags."

// parseFlags parses args. It returns flag.ErrHelp after printing the help
// for -h and --help, and any other error after printing it and a hint.
func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("examplevm", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.UintVar(&cfg.protocolVersion, "protocol-version", vmre.ProtocolVersion,
		"the protocol `version` announced to the host; set another one to see a version mismatch")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo,
		"the lowest `level` logged: debug, info, warn or error")
	fs.BoolVar(&cfg.noHandshake, "no-handshake", false,
		"listen but never call the host back, to reproduce a \"VM never called back\" handshake timeout")
	fs.BoolVar(&cfg.unhealthy, "unhealthy", false,
		"answer grpc.health.v1 Check with NOT_SERVING, to reproduce a VM that starts but is not healthy (a rollout rolls it back)")
	fs.DurationVar(&cfg.exitAfter, "exit-after", 0,
		"exit 1 this `long` after the handshake, to reproduce a VM that crashes soon after it starts")
	fs.Usage = func() {} // printed below: all of it for --help, a hint after an error

	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		printUsage(fs)
		return config{}, err
	} else if err != nil {
		fmt.Fprintln(output, usageHint) // the flag package printed err
		return config{}, err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q: examplevm takes flags only", fs.Arg(0))
	}
	if cfg.exitAfter < 0 {
		return usageError(fs, "--exit-after %s: give a positive duration, such as 2s", cfg.exitAfter)
	}
	if cfg.protocolVersion > math.MaxUint32 {
		return usageError(fs, "--protocol-version %d is out of range: the handshake carries a uint32", cfg.protocolVersion)
	}
	return cfg, nil
}

func usageError(fs *flag.FlagSet, format string, args ...any) (config, error) {
	err := fmt.Errorf(format, args...)
	fmt.Fprintf(fs.Output(), "%v\n%s\n", err, usageHint)
	return config{}, err
}

// printUsage prints the help with GNU-style double-dash flag names; the
// flag package accepts both one and two dashes.
func printUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, usageHead)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s", f.Name, name, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "  -h, --help\n    \tshow this help")
}
