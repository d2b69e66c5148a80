package main

import (
	"flag"

	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/sandbox"
)

// sandboxFlags are the flags of node and run that sandbox their VMs
// (docs/SANDBOX.md).
type sandboxFlags struct {
	sandboxLevel, sandboxPolicy string
}

func (f *sandboxFlags) register(fs *flag.FlagSet, def sandbox.Level) {
	fs.StringVar(&f.sandboxLevel, "sandbox", def.String(), "how each VM's policy is applied: `level` off, best-effort or required")
	fs.StringVar(&f.sandboxPolicy, "sandbox-policy", "", "the VMs' sandbox policies, a JSON `file` (docs/SANDBOX.md)")
}

// validate reports a level that is none and a policy file that does not
// parse.
func (f *sandboxFlags) validate(fs *flag.FlagSet, e env) int {
	if _, err := sandbox.ParseLevel(f.sandboxLevel); err != nil {
		return usagef(fs, e, "--sandbox %q: give off, best-effort or required", f.sandboxLevel)
	}
	if f.sandboxPolicy != "" {
		if _, err := sandbox.ReadFile(f.sandboxPolicy); err != nil {
			return usagef(fs, e, "--sandbox-policy: %v", err)
		}
	}
	return exitOK
}

// apply sets the node's sandbox level and policies.
func (f *sandboxFlags) apply(cfg *node.Config) error {
	var err error
	if cfg.Sandbox, err = sandbox.ParseLevel(f.sandboxLevel); err != nil {
		return err
	}
	if f.sandboxPolicy != "" {
		if cfg.SandboxPolicy, err = sandbox.ReadFile(f.sandboxPolicy); err != nil {
			return err
		}
	}
	return nil
}
