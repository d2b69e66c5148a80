//go:build !linux

package sandbox

import (
	"fmt"
	"os/exec"

	"github.com/vmre/vmre"
)

// Init returns at once: the init step exists on Linux only.
func Init() {}

// LandlockABI returns 0: Landlock is Linux's.
func LandlockABI() int { return 0 }

// Command runs vm as it is under Off and BestEffort, the latter with a
// report that no rule was applied, and refuses it under Required: the
// sandbox exists on Linux only.
func Command(vm *exec.Cmd, p Policy, o Options) (*Cmd, error) {
	if vm == nil || vm.Process != nil {
		return nil, fmt.Errorf("%w: sandbox.Command needs an unstarted *exec.Cmd", vmre.ErrInvalidConfig)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("%w: sandbox policy: %w", vmre.ErrInvalidConfig, err)
	}
	report := &Report{Level: o.Level}
	if o.Level == Off {
		return &Cmd{Cmd: vm, off: report}, nil
	}
	missing := Rule{Name: "files", Protective: true, Missing: "Linux", Detail: "the sandbox is Linux's"}
	report.Rules = []Rule{missing}
	if o.Level == Required {
		return nil, &RefusedError{Missing: report.Rules}
	}
	return &Cmd{Cmd: vm, off: report}, nil
}

// Start starts cmd: without the init step there is nothing to apply.
func Start(cmd *exec.Cmd) error { return cmd.Start() }
