// Package sandbox runs a VM with only what it is granted: a policy of
// files, TCP ports, resource limits and privileges, applied with the
// kernel's Landlock, setrlimit and no_new_privs in the VM's own process
// before it execs the VM. docs/SANDBOX.md is the operator's guide: the
// threat, the default policy, the policy file, kernels, the overhead.
//
// Go runs no code between fork and exec, so the policy is applied from
// outside the VM's program. Command turns a VM's command into one that
// re-executes this program under the name InitName, with the policy: this
// init step restricts itself, sends the node a Report over a pipe, and
// execs the VM, as runc's init and Docker's reexec do. Start, given to the
// launcher (launcher.Config.Start), does without that second program where
// the system allows: it execs the VM stopped by ptrace at its first
// instruction, applies the policy to it, sends the Report and lets it run.
// A launcher starts the command as it would the VM's, and knows nothing of
// policies:
//
//	func main() {
//		sandbox.Init() // the init step, when this process is one
//		...
//	}
//
//	l, err := launcher.New(launcher.Config{Start: sandbox.Start})
//	sc, err := sandbox.Command(vm, policy, sandbox.Options{Level: sandbox.BestEffort, DataDir: dir, TempDir: tmp})
//	rt, err := l.Launch(ctx, sc.Cmd, launcher.WithName(name))
//	report, err := sc.Report()
//
// A Level says what happens on a kernel that cannot apply the whole
// policy: BestEffort applies what it can and reports the rest, Required
// refuses with a *RefusedError that names the missing feature. A node
// reads its VMs' policies from one file (ReadFile, File.Policy), decoded
// strictly.
//
// The init step exists on Linux; elsewhere Command runs the VM as it is
// (BestEffort, with a report that says so) or refuses it (Required).
package sandbox
