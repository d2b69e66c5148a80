// Command sandboxinit is the sandbox's init step and nothing else: a
// small static program that a node may point sandbox.Options.Executable
// at, instead of re-executing its own, larger binary, whose start-up is
// most of what the init step costs (docs/SANDBOX.md, "Overhead").
package main

import "github.com/vmre/vmre/sandbox"

func main() { sandbox.Init() }
