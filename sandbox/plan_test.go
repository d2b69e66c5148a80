package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/landlock-lsm/go-landlock/landlock"
)

// testSpec is a spec as Command makes it for a VM with data and temporary
// directories and the default limits.
func testSpec(level Level) *spec {
	return &spec{
		Level: level, Path: "/plugins/vm", Report: 3, Image: -1, UID: -1, GID: -1,
		Files: []grant{{Path: "/plugins/vm", Access: accessReadExec}, {Path: "/usr", Access: accessReadExec, Optional: true},
			{Path: "/var/lib/vmre/vms/vm/data", Access: accessReadWrite}},
		EngineKeys: defaultEngineKeys,
		Limits:     []specLimit{{Name: "open_files", Limit: defaultOpenFiles}, {Name: "core", Limit: defaultCore}},
	}
}

// testFacts are a kernel at abi, for a node that is root with every
// capability, whose VM is told the engine at 127.0.0.1:9650.
func testFacts(abi int) facts {
	return facts{abi: abi, uid: 0, setID: true, raise: true,
		getenv: func(k string) string {
			if k == "VMRE_RUNTIME_ENGINE_ADDR" {
				return "127.0.0.1:9650"
			}
			return ""
		},
		limit: func(string) (Limit, error) { return Limit{Soft: 1024, Hard: 4096}, nil }}
}

// Each kernel's report says which Landlock rules it cannot apply and what
// each needs; Required refuses those, best-effort only reports them.
func TestPlanByABI(t *testing.T) {
	for _, tc := range []struct {
		abi     int
		missing []string // protective rules not applied
		needs   string   // what the first of them needs
	}{
		{0, []string{"files", "files.truncate", "files.ioctl_dev", "network", "ipc_scope"}, "Landlock ABI 1 (Linux 5.13)"},
		{1, []string{"files.truncate", "files.ioctl_dev", "network", "ipc_scope"}, "Landlock ABI 3 (Linux 6.2)"},
		{3, []string{"files.ioctl_dev", "network", "ipc_scope"}, "Landlock ABI 5 (Linux 6.10)"},
		{4, []string{"files.ioctl_dev", "ipc_scope"}, "Landlock ABI 5 (Linux 6.10)"},
		{6, nil, ""},
		{7, nil, ""},
		{11, nil, ""}, // a newer kernel gets the rules of ABI 7
	} {
		for _, level := range []Level{BestEffort, Required} {
			p, err := makePlan(testSpec(level), testFacts(tc.abi))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range p.report.Missing() {
				names = append(names, r.Name)
			}
			if strings.Join(names, " ") != strings.Join(tc.missing, " ") {
				t.Errorf("ABI %d: missing %v, want %v", tc.abi, names, tc.missing)
			}
			err = p.refused()
			switch {
			case level == BestEffort && err != nil:
				t.Errorf("ABI %d, best-effort: refused: %v", tc.abi, err)
			case level == Required && len(tc.missing) == 0 && err != nil:
				t.Errorf("ABI %d, required: refused: %v", tc.abi, err)
			case level == Required && len(tc.missing) > 0:
				var refused *RefusedError
				if !errors.As(err, &refused) || !strings.Contains(err.Error(), tc.needs) {
					t.Errorf("ABI %d, required: %v; want a refusal naming %s", tc.abi, err, tc.needs)
				}
			}
			if audit, _ := p.report.Rule("audit_log"); audit.Protective || audit.Applied != (tc.abi >= 7) {
				t.Errorf("ABI %d: audit_log %+v", tc.abi, audit)
			}
			wantState := StateFull
			if len(tc.missing) > 0 {
				wantState = StatePartial
			}
			if p.report.State() != wantState {
				t.Errorf("ABI %d: state %s, want %s", tc.abi, p.report.State(), wantState)
			}
		}
	}
}

// The ruleset handles what the kernel's ABI knows, and the network rules
// grant the engine's port and the declared ones.
func TestPlanRuleset(t *testing.T) {
	s := testSpec(Required)
	s.Connect = []uint16{8545}
	s.Bind = []uint16{9651}
	p, err := makePlan(s, testFacts(7))
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.HandledAccessFS != landlock.V7.HandledAccessFS || p.cfg.HandledAccessNet != landlock.V7.HandledAccessNet ||
		p.cfg.Scoped != landlock.V7.Scoped {
		t.Errorf("config %v, want V7's access rights", p.cfg)
	}
	var net []string
	for _, r := range p.net {
		net = append(net, fmt.Sprint(r))
	}
	want := []string{fmt.Sprint(landlock.ConnectTCP(9650)), fmt.Sprint(landlock.ConnectTCP(8545)),
		fmt.Sprint(landlock.BindTCP(0)), fmt.Sprint(landlock.BindTCP(9651))}
	if strings.Join(net, ";") != strings.Join(want, ";") {
		t.Errorf("network rules %v, want %v", net, want)
	}
	network, _ := p.report.Rule("network")
	if !strings.Contains(network.Detail, "9650, 8545 (the engine's from VMRE_RUNTIME_ENGINE_ADDR)") {
		t.Errorf("network detail %q", network.Detail)
	}
	for _, g := range p.files {
		if g.set == 0 {
			t.Errorf("grant %s has no rights", g.Path)
		}
	}

	// Unrestricted turns a kind of rule off: told, not missing.
	s.FilesUnrestricted, s.NetworkUnrestricted = true, true
	p, _ = makePlan(s, testFacts(7))
	if p.cfg.HandledAccessFS != 0 || p.cfg.HandledAccessNet != 0 || len(p.report.Missing()) != 0 {
		t.Errorf("unrestricted: config %v, missing %v", p.cfg, p.report.Missing())
	}
	if files, _ := p.report.Rule("files"); files.Applied || files.Protective || !strings.Contains(files.Detail, "files.unrestricted") {
		t.Errorf("files %+v", files)
	}
}

// The engine's port comes from the VM's environment; a VM told none gets
// only the declared ports.
func TestPlanEnginePort(t *testing.T) {
	for _, tc := range []struct {
		env, detail string
		ports       []uint16
	}{
		{"AVALANCHE_VM_RUNTIME_ENGINE_ADDR=127.0.0.1:41234", "the engine's from AVALANCHE_VM_RUNTIME_ENGINE_ADDR", []uint16{41234}},
		{"", "none of VMRE_RUNTIME_ENGINE_ADDR", nil},
		{"VMRE_RUNTIME_ENGINE_ADDR=127.0.0.1", "names none", nil},
	} {
		key, val, _ := strings.Cut(tc.env, "=")
		ports, detail := connectPorts(&spec{EngineKeys: defaultEngineKeys}, func(k string) string {
			if k == key {
				return val
			}
			return ""
		})
		if !strings.Contains(detail, tc.detail) || len(ports) != len(tc.ports) || (len(ports) > 0 && ports[0] != tc.ports[0]) {
			t.Errorf("%q: %v %q, want %v %q", tc.env, ports, detail, tc.ports, tc.detail)
		}
	}
}

// A hard limit above the node's needs CAP_SYS_RESOURCE: without it the
// node's is kept and told; a process limit binds no VM that runs as root;
// a user needs CAP_SETUID.
func TestPlanPrivileges(t *testing.T) {
	f := testFacts(7)
	f.uid, f.setID, f.raise = 1000, false, false
	s := testSpec(Required)
	s.UID, s.GID = 2000, 2000
	s.Limits = append(s.Limits, specLimit{Name: "processes", Limit: Limit{Soft: 64, Hard: 64}})
	p, err := makePlan(s, f)
	if err != nil {
		t.Fatal(err)
	}
	nofile, _ := p.report.Rule("limits.open_files")
	if nofile.Applied || nofile.Protective || nofile.Missing != "CAP_SYS_RESOURCE" ||
		!strings.Contains(nofile.Detail, "1024 soft, 4096 hard set") {
		t.Errorf("open_files %+v", nofile)
	}
	if p.limits[0].Limit != (Limit{Soft: 1024, Hard: 4096}) {
		t.Errorf("open_files set to %v, want the node's hard limit", p.limits[0].Limit)
	}
	if user, _ := p.report.Rule("user"); user.Applied || !user.Protective || p.uid != -1 {
		t.Errorf("user %+v, uid %d", user, p.uid)
	}
	if procs, _ := p.report.Rule("limits.processes"); !procs.Applied {
		t.Errorf("processes %+v: the VM runs as uid 1000", procs)
	}
	if err := p.refused(); err == nil || !strings.Contains(err.Error(), "user:") {
		t.Errorf("required: %v, want a refusal for the user", err)
	}

	// Root with no user of the VM's own: the process limit is told as
	// not enforced.
	s = testSpec(BestEffort)
	s.Limits = []specLimit{{Name: "processes", Limit: Limit{Soft: 64, Hard: 64}}}
	p, _ = makePlan(s, testFacts(7))
	if procs, _ := p.report.Rule("limits.processes"); procs.Applied || !procs.Protective {
		t.Errorf("processes for a root VM %+v", procs)
	}
}

// A report reads as one line, and a refusal names every missing rule.
func TestReportString(t *testing.T) {
	p, _ := makePlan(testSpec(Required), testFacts(3))
	s := p.report.String()
	for _, want := range []string{"sandbox required, partial, Landlock ABI 3: applied files, files.truncate",
		"not applied: files.ioctl_dev (the kernel has Landlock ABI 3; needs Landlock ABI 5 (Linux 6.10))",
		"network (the kernel has Landlock ABI 3; needs Landlock ABI 4 (Linux 6.7))"} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q lacks %q", s, want)
		}
	}
	err := p.refused()
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "network: the kernel has Landlock ABI 3; needs Landlock ABI 4 (Linux 6.7)") {
		t.Errorf("refused: %v", err)
	}
	var nilReport *Report
	if nilReport.State() != StateOff || nilReport.String() != "sandbox off" || nilReport.Missing() != nil {
		t.Error("a nil report is not off")
	}
}
