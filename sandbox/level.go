package sandbox

import (
	"fmt"

	"github.com/vmre/vmre"
)

// Level is how a node applies its VMs' policies.
type Level int

const (
	// Off runs VMs with the node's own rights, as AvalancheGo runs its
	// plugins: no init step, no report.
	Off Level = iota
	// BestEffort applies what the kernel supports, runs the VM, and
	// reports each rule it could not apply.
	BestEffort
	// Required refuses to launch a VM whose policy the kernel cannot apply
	// whole, naming the missing kernel feature.
	Required
)

var levelNames = [...]string{Off: "off", BestEffort: "best-effort", Required: "required"}

// String returns the level's name: off, best-effort or required.
func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel parses a level's name.
func ParseLevel(s string) (Level, error) {
	for l, name := range levelNames {
		if s == name {
			return Level(l), nil
		}
	}
	return Off, fmt.Errorf("%w: sandbox level %q: want off, best-effort or required", vmre.ErrInvalidConfig, s)
}

// MarshalText implements encoding.TextMarshaler.
func (l Level) MarshalText() ([]byte, error) {
	if l < 0 || int(l) >= len(levelNames) {
		return nil, fmt.Errorf("%w: sandbox level %d", vmre.ErrInvalidConfig, int(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
