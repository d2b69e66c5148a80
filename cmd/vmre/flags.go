package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// newFlagSet returns the flag set of a subcommand. Parsing stops at the
// first argument that is not a flag, so everything after PLUGIN passes
// through to the plugin unchanged.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("vmre "+name, flag.ContinueOnError)
	fs.Usage = func() {} // parseFlags prints the usage itself
	return fs
}

// parseFlags parses args into fs. For -h or --help it prints head, the
// flags and tail on stdout and returns flag.ErrHelp; for a bad flag it
// prints the error and a hint on stderr and returns it.
func parseFlags(fs *flag.FlagSet, head, tail string, args []string, e env) error {
	fs.SetOutput(io.Discard) // a bad flag's error is printed below, with the command's name
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(e.stdout, fs, head, tail)
	case err != nil:
		fmt.Fprintf(e.stderr, "%s: %v\nRun '%s --help' for usage.\n", fs.Name(), err, fs.Name())
	}
	return err
}

// flagExit is the exit code after parseFlags failed.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// usagef reports a usage error found after the flags were parsed.
func usagef(fs *flag.FlagSet, e env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s\nRun '%s --help' for usage.\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitUsage
}

// printUsage prints head, the flags with GNU-style dashes (two, one for a
// one-letter flag; the flag package accepts either), then tail.
func printUsage(w io.Writer, fs *flag.FlagSet, head, tail string) {
	fmt.Fprint(w, head)
	fmt.Fprintln(w, "Flags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		fmt.Fprintf(w, "  %s%s%s\n    \t%s", dashes, f.Name, name, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "  -h, --help\n    \tshow this help")
	if tail != "" {
		fmt.Fprint(w, "\n"+tail)
	}
}

// checkTimeouts rejects negative durations, which the flag package accepts.
func checkTimeouts(fs *flag.FlagSet, e env, timeouts map[string]time.Duration) int {
	for name, d := range timeouts {
		if d <= 0 {
			return usagef(fs, e, "--%s %s: a timeout must be positive, such as 500ms or 5s (0 would mean the default)", name, d)
		}
	}
	return exitOK
}
