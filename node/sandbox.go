package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/metrics"
	"github.com/vmre/vmre/sandbox"
)

// sandboxDirs makes the data directory of the VM name and empties its
// temporary directory: DataDir/vms/NAME/data and DataDir/vms/NAME/tmp.
// Their parents may be passed through (0711) by a VM that runs as a user
// of its own; the init step gives the two to that user.
func (n *Node) sandboxDirs(name string) (data, tmp string, err error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", "", fmt.Errorf("%w: the VM name %q cannot name a directory", vmre.ErrInvalidConfig, name)
	}
	vms := filepath.Join(n.cfg.DataDir, "vms")
	dir := filepath.Join(vms, name)
	data, tmp = filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return "", "", fmt.Errorf("empty the VM's temporary directory: %w", err)
	}
	for _, d := range []string{vms, dir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", "", fmt.Errorf("make the VM's directory: %w", err)
		}
	}
	for _, d := range []string{data, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", fmt.Errorf("make the VM's directory: %w", err)
		}
	}
	return data, tmp, nil
}

// sandboxed turns the command of the VM name, known too by aliases, into
// one that runs through the sandbox's init step. Under sandbox.Required a
// policy the kernel cannot apply is refused: a *sandbox.RefusedError, which
// no later launch would change.
func (n *Node) sandboxed(name string, aliases []string, cmd *exec.Cmd) (*sandbox.Cmd, error) {
	data, tmp, err := n.sandboxDirs(name)
	if err != nil {
		return nil, err
	}
	policy := n.cfg.SandboxPolicy.Policy(append([]string{name}, aliases...)...)
	sc, err := sandbox.Command(cmd, policy, sandbox.Options{Level: n.cfg.Sandbox, DataDir: data, TempDir: tmp,
		EngineAddressKey: n.cfg.Launch.EngineAddressKey})
	if err != nil {
		return nil, fmt.Errorf("sandbox of VM %s: %w", name, err)
	}
	return sc, nil
}

// sandboxReport reads what the init step of a launch of the VM name
// applied, keeps it for SandboxReport, and logs it: a rule not applied is a
// warning. launchErr is the launch's own error, if any.
func (n *Node) sandboxReport(name string, sc *sandbox.Cmd, launchErr error) {
	report, err := sc.Report()
	switch {
	case report == nil && launchErr != nil:
		return // the launch failed before the init step could tell anything
	case err != nil && launchErr == nil:
		n.log.Error("sandbox", "vm", name, "error", err.Error())
	}
	if report == nil {
		return
	}
	n.keepSandbox(name, report)
	level := n.log.Info
	// A protective rule not applied makes a warning that names it.
	var missing []string
	for _, r := range report.Missing() {
		missing = append(missing, r.Name)
	}
	attrs := []any{"vm", name, "sandbox", report.Level.String(), "state", report.State().String(), "method", report.Method,
		"landlock_abi", report.LandlockABI, "not_applied", len(report.NotApplied())}
	if len(missing) > 0 {
		level = n.log.Warn
		attrs = append(attrs, "missing", strings.Join(missing, ","))
	}
	level("sandbox", append(attrs, "report", report.String())...)
}

// keepSandbox keeps the report of the VM name's launch, for SandboxReport,
// the admin API and the metrics.
func (n *Node) keepSandbox(name string, report *sandbox.Report) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sandboxes == nil {
		n.sandboxes = make(map[string]*sandbox.Report)
	}
	n.sandboxes[name] = report
}

// sandboxLevels are the states of the VMs' last reports, by name, for the
// metric vmre_vm_sandbox.
func (n *Node) sandboxLevels() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	levels := make(map[string]string, len(n.sandboxes))
	for name, r := range n.sandboxes {
		levels[name] = r.State().String()
	}
	return levels
}

// sandboxMetric is the metrics' view of the VMs' sandboxes.
func (n *Node) sandboxMetric() *metrics.SandboxLevels {
	var levels []string
	for _, s := range sandbox.States() {
		levels = append(levels, s.String())
	}
	return &metrics.SandboxLevels{Levels: levels, Of: n.sandboxLevels}
}

// SandboxReport returns what the sandbox applied at the last launch of the
// VM name that got as far as applying its policy (a report of level off
// under sandbox.Off): docs/SANDBOX.md, "The report".
func (n *Node) SandboxReport(name string) (*sandbox.Report, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.sandboxes[name]
	return r, ok
}

// sandboxView is a report as the admin API shows it; nil for none.
func sandboxView(r *sandbox.Report) *adminv1.Sandbox {
	if r == nil {
		return nil
	}
	v := &adminv1.Sandbox{Level: r.Level.String(), State: r.State().String(), LandlockAbi: uint32(r.LandlockABI),
		Kernel: r.Kernel, Method: r.Method, Summary: r.String()}
	for _, rule := range r.Rules {
		v.Rules = append(v.Rules, &adminv1.SandboxRule{Name: rule.Name, Applied: rule.Applied, Protective: rule.Protective,
			Detail: rule.Detail, Missing: rule.Missing})
	}
	return v
}

// validateSandbox checks the sandbox's part of a Config.
func validateSandbox(cfg *Config) error {
	switch {
	case !slices.Contains([]sandbox.Level{sandbox.Off, sandbox.BestEffort, sandbox.Required}, cfg.Sandbox):
		return fmt.Errorf("%w: sandbox level %d", vmre.ErrInvalidConfig, int(cfg.Sandbox))
	case cfg.Sandbox != sandbox.Off && cfg.DataDir == "":
		return fmt.Errorf("%w: a sandboxed node needs a DataDir, where each VM gets its data and temporary directories", vmre.ErrInvalidConfig)
	}
	return nil
}
