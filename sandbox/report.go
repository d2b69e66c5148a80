package sandbox

import (
	"errors"
	"fmt"
	"strings"
)

// Report says which rules of a VM's policy the init step applied and
// which it could not, and why. The init step sends it to the node before
// it execs the VM (Cmd.Report).
type Report struct {
	// Level is the level the VM was launched under.
	Level Level `json:"level"`
	// LandlockABI is the kernel's Landlock ABI; 0 when it has none.
	LandlockABI int `json:"landlock_abi"`
	// Kernel is the kernel's release (uname -r).
	Kernel string `json:"kernel,omitempty"`
	// Method is how the policy was applied: MethodPtrace or MethodExec;
	// "" under Off.
	Method string `json:"method,omitempty"`
	// Rules are the policy's rules in a fixed order: files, files.truncate,
	// files.ioctl_dev, network, network.mptcp, ipc_scope, audit_log,
	// landlock_abi, no_new_privs, user, limits.NAME (docs/SANDBOX.md).
	Rules []Rule `json:"rules"`
}

// How a policy is applied (Report.Method). Both give the VM the same
// rules from its first instruction; docs/SANDBOX.md, "How it works".
const (
	// MethodPtrace: the node started the VM stopped at its first
	// instruction, applied the policy to it, and let it run (Start).
	MethodPtrace = "ptrace"
	// MethodExec: the init step, a second program started in the VM's
	// place, applied the policy to itself and exec'd the VM.
	MethodExec = "exec"
)

// Rule is one rule of a VM's sandbox and whether it was applied.
type Rule struct {
	// Name names the rule: "files", "network", "limits.open_files", ...
	Name string `json:"name"`
	// Applied tells whether the rule holds for the VM.
	Applied bool `json:"applied"`
	// Protective is set for a rule whose absence leaves the VM a right its
	// policy denies: Required refuses to launch without it. The others
	// (the audit log, a limit the node could not raise, a rule the policy
	// turned off) are told only.
	Protective bool `json:"protective,omitempty"`
	// Detail says what an applied rule grants, or why a rule was not
	// applied.
	Detail string `json:"detail,omitempty"`
	// Missing names what a rule that was not applied needs: a kernel
	// feature ("Landlock ABI 4 (Linux 6.7)") or a privilege.
	Missing string `json:"missing,omitempty"`
}

// State is how much of a VM's policy holds.
type State int

const (
	// StateOff: the VM runs without the sandbox (level off).
	StateOff State = iota
	// StatePartial: some protective rule was not applied (best-effort).
	StatePartial
	// StateFull: every protective rule holds.
	StateFull
)

var stateNames = [...]string{StateOff: "off", StatePartial: "partial", StateFull: "full"}

// String returns off, partial or full: the values of a node's
// vmre_vm_sandbox metric's state label.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// States are all the states, for a metric that has one series each.
func States() []State { return []State{StateOff, StatePartial, StateFull} }

// State tells how much of the policy holds.
func (r *Report) State() State {
	if r == nil || r.Level == Off {
		return StateOff
	}
	if len(r.Missing()) > 0 {
		return StatePartial
	}
	return StateFull
}

// Missing returns the protective rules that were not applied.
func (r *Report) Missing() []Rule {
	if r == nil {
		return nil
	}
	var missing []Rule
	for _, rule := range r.Rules {
		if rule.Protective && !rule.Applied {
			missing = append(missing, rule)
		}
	}
	return missing
}

// NotApplied returns every rule that was not applied, protective or not.
func (r *Report) NotApplied() []Rule {
	if r == nil {
		return nil
	}
	var out []Rule
	for _, rule := range r.Rules {
		if !rule.Applied {
			out = append(out, rule)
		}
	}
	return out
}

// Rule returns the rule of that name, if the report has it.
func (r *Report) Rule(name string) (Rule, bool) {
	if r != nil {
		for _, rule := range r.Rules {
			if rule.Name == name {
				return rule, true
			}
		}
	}
	return Rule{}, false
}

// String sums the report up in a line: the level, the state, the rules
// applied and those that were not, with why.
func (r *Report) String() string {
	if r == nil || r.Level == Off {
		return "sandbox off"
	}
	var applied, not []string
	for _, rule := range r.Rules {
		if rule.Applied {
			applied = append(applied, rule.Name)
		} else {
			not = append(not, rule.Name+" ("+rule.why()+")")
		}
	}
	s := fmt.Sprintf("sandbox %s, %s, Landlock ABI %d: applied %s", r.Level, r.State(), r.LandlockABI, strings.Join(applied, ", "))
	if len(not) > 0 {
		s += "; not applied: " + strings.Join(not, "; ")
	}
	return s
}

// why is a rule's reason for not being applied.
func (rule Rule) why() string {
	switch {
	case rule.Missing != "" && rule.Detail != "":
		return rule.Detail + "; needs " + rule.Missing
	case rule.Missing != "":
		return "needs " + rule.Missing
	}
	return rule.Detail
}

// ErrRefused is the error of a launch that Required refused: errors.Is
// finds it in a *RefusedError.
var ErrRefused = errors.New("sandbox refused the launch")

// RefusedError is the error of a VM that the Required level does not
// launch: its policy needs what the kernel or the node lacks.
type RefusedError struct {
	// Missing are the protective rules that could not be applied.
	Missing []Rule
}

func (e *RefusedError) Error() string {
	var parts []string
	for _, rule := range e.Missing {
		parts = append(parts, rule.Name+": "+rule.why())
	}
	return "sandbox required, but the policy cannot be applied whole: " + strings.Join(parts, "; ")
}

func (e *RefusedError) Unwrap() error { return ErrRefused }
