package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/vmre/vmre"
)

const versionHead = `Usage: vmre version

version prints vmre's version (its module version, or "devel" when built
from a checkout without one), the native protocol version it speaks, and the
Go version it was built with.

Example:
  vmre version

`

func versionCommand(_ context.Context, args []string, e env) int {
	fs := newFlagSet("version")
	if err := parseFlags(fs, versionHead, "", args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usagef(fs, e, "unexpected argument %q: version takes none", fs.Arg(0))
	}
	version, commit := buildVersion()
	fmt.Fprintf(e.stdout, "vmre %s\n", version)
	if commit != "" {
		fmt.Fprintf(e.stdout, "commit: %s\n", commit)
	}
	fmt.Fprintf(e.stdout, "protocol version: %d\n", vmre.ProtocolVersion)
	fmt.Fprintf(e.stdout, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildVersion reads the main module's version and VCS revision from the
// build info.
func buildVersion() (version, commit string) {
	version = "devel"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if commit != "" && modified {
		commit += " (modified)"
	}
	return version, commit
}
