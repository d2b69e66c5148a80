package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/vmre/vmre"
)

// File is a policy file: a default policy for every VM, and policies of
// VMs of their own, each read over the default key by key.
//
//	{
//	  "default": {"limits": {"open_files": 4096}},
//	  "vms": {
//	    "timestampvm": {"files": {"read": ["/opt/timestamp/share"]}, "network": {"connect": [9650]}}
//	  }
//	}
//
// A key a VM's policy sets replaces the default's value of that key (a
// list is replaced, not merged); the keys it leaves out keep the default's.
// Decoding is strict: an unknown key is an error that names it and where.
type File struct {
	// Default is the policy of a VM with no entry of its own.
	Default Policy
	// VMs are the VMs' own policies, the default already applied, by the
	// name the file gives them (a VM's ID or one of its aliases).
	VMs map[string]Policy
}

// ReadFile reads and parses the policy file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the sandbox policy file: %w", err)
	}
	f, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("sandbox policy file %s: %w", path, err)
	}
	return f, nil
}

// ParseFile parses a policy file's bytes. Errors wrap vmre.ErrInvalidConfig
// and start with the place of the problem (vms.NAME.files.read: ...).
func ParseFile(data []byte) (*File, error) {
	if err := checkSyntax(data); err != nil {
		return nil, err
	}
	f := &File{VMs: map[string]Policy{}}
	var vms json.RawMessage
	err := decodeObject(data, map[string]func(json.RawMessage) error{
		"default": func(raw json.RawMessage) error { return decodePolicy(raw, &f.Default) },
		"vms":     func(raw json.RawMessage) error { vms = raw; return nil },
	})
	if err != nil {
		return nil, invalid(err)
	}
	if err := f.Default.validate(); err != nil {
		return nil, invalid(at("default", err))
	}
	if vms == nil {
		return f, nil
	}
	var raws map[string]json.RawMessage
	if err := json.Unmarshal(vms, &raws); err != nil || raws == nil {
		return nil, invalid(fmt.Errorf("vms: want an object of policies by VM name"))
	}
	for _, name := range slices.Sorted(maps.Keys(raws)) {
		if name == "" {
			return nil, invalid(fmt.Errorf("vms: a VM's name is empty"))
		}
		p := f.Default.clone()
		if err := decodePolicy(raws[name], &p); err != nil {
			return nil, invalid(at("vms", at(name, err)))
		}
		if err := p.validate(); err != nil {
			return nil, invalid(at("vms", at(name, err)))
		}
		f.VMs[name] = p
	}
	return f, nil
}

// Policy returns the policy of the first of names (a VM's ID, then its
// aliases) that has an entry, or the default. A nil File gives the zero
// Policy: the default policy of docs/SANDBOX.md.
func (f *File) Policy(names ...string) Policy {
	if f == nil {
		return Policy{}
	}
	for _, name := range names {
		if p, ok := f.VMs[name]; ok {
			return p.clone()
		}
	}
	return f.Default.clone()
}

// invalid marks a decoding error as bad configuration.
func invalid(err error) error { return fmt.Errorf("%w: %w", vmre.ErrInvalidConfig, err) }

// checkSyntax reports a JSON syntax error with its line and column.
func checkSyntax(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		before := data[:min(int(syn.Offset), len(data))]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n') - 1 // the offending byte's
		return invalid(fmt.Errorf("line %d, column %d: %w", line, col, err))
	}
	if err != nil {
		return invalid(err)
	}
	if _, ok := v.(map[string]any); !ok {
		return invalid(errors.New(`want an object: {"default": {...}, "vms": {"NAME": {...}}}`))
	}
	return nil
}

// keyError is an error of the value at a place in the file.
type keyError struct {
	path []string // keys from the outermost
	err  error
}

func (e *keyError) Error() string {
	if len(e.path) == 0 {
		return e.err.Error()
	}
	return strings.Join(e.path, ".") + ": " + e.err.Error()
}

func (e *keyError) Unwrap() error { return e.err }

// at puts err under key: "key.inner: ...".
func at(key string, err error) error {
	var ke *keyError
	if errors.As(err, &ke) {
		return &keyError{path: append([]string{key}, ke.path...), err: ke.err}
	}
	return &keyError{path: []string{key}, err: err}
}

// decodeObject decodes the JSON object raw key by key with fields, and
// refuses a key it does not know, naming it and those it knows. An error
// of a field's decoder is put under its key: "files.read: ...".
func decodeObject(raw json.RawMessage, fields map[string]func(json.RawMessage) error) error {
	known := strings.Join(slices.Sorted(maps.Keys(fields)), ", ")
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return fmt.Errorf("want an object with the keys %s", known)
	}
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		decode, ok := fields[key]
		if !ok {
			return &keyError{err: fmt.Errorf("unknown key %q (known: %s)", key, known)}
		}
		if err := decode(obj[key]); err != nil {
			return at(key, err)
		}
	}
	return nil
}

// into returns a field decoder that decodes a value into v.
func into(v any) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		if err := json.Unmarshal(raw, v); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				return fmt.Errorf("want %s, not a JSON %s", typeName(typ.Type.String()), typ.Value)
			}
			return err
		}
		return nil
	}
}

func typeName(t string) string {
	switch t {
	case "[]string":
		return "a list of paths"
	case "[]uint16", "uint16":
		return "TCP ports (1 to 65535)"
	case "bool":
		return "true or false"
	case "int":
		return "a whole number"
	case "string":
		return "a string"
	}
	return t
}

// decodePolicy decodes raw over p: the keys it holds replace p's.
func decodePolicy(raw json.RawMessage, p *Policy) error {
	return decodeObject(raw, map[string]func(json.RawMessage) error{
		"files": func(raw json.RawMessage) error {
			return decodeObject(raw, map[string]func(json.RawMessage) error{
				"read":         into(&p.Files.Read),
				"write":        into(&p.Files.Write),
				"unrestricted": into(&p.Files.Unrestricted),
			})
		},
		"network": func(raw json.RawMessage) error {
			return decodeObject(raw, map[string]func(json.RawMessage) error{
				"connect":      into(&p.Network.Connect),
				"bind":         into(&p.Network.Bind),
				"unrestricted": into(&p.Network.Unrestricted),
			})
		},
		"limits": func(raw json.RawMessage) error {
			fields := map[string]func(json.RawMessage) error{}
			for i, name := range limitNames {
				field := p.Limits.field(i)
				fields[name] = func(raw json.RawMessage) error {
					var l Limit
					if err := l.UnmarshalJSON(raw); err != nil {
						return err
					}
					*field = &l
					return nil
				}
			}
			return decodeObject(raw, fields)
		},
		"user":         into(&p.User),
		"group":        into(&p.Group),
		"landlock_abi": into(&p.LandlockABI),
	})
}
