package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Unlimited is a limit's value for no limit (RLIM_INFINITY).
const Unlimited = math.MaxUint64

// Limit is the soft and hard value of one resource limit. In a policy file
// it is a number (both values), "unlimited", a size with a unit ("512MiB",
// "4GiB"), or {"soft": S, "hard": H} of those.
type Limit struct {
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// limitField is one of Limits' fields, by its key in the file.
type limitField struct {
	name  string
	limit *Limit
}

// limitNames are Limits' fields in order, as field numbers them.
var limitNames = [...]string{"open_files", "processes", "address_space", "data", "core", "cpu_seconds"}

// all returns l's fields in the order of limitNames.
func (l *Limits) all() []limitField {
	fields := make([]limitField, len(limitNames))
	for i, name := range limitNames {
		fields[i] = limitField{name: name, limit: *l.field(i)}
	}
	return fields
}

// field returns the address of l's field number i (limitNames).
func (l *Limits) field(i int) **Limit {
	return [...]**Limit{&l.OpenFiles, &l.Processes, &l.AddressSpace, &l.Data, &l.Core, &l.CPUSeconds}[i]
}

// UnmarshalJSON reads a number, a string or {"soft", "hard"}.
func (l *Limit) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var soft, hard *uint64
		value := func(dst **uint64) func(json.RawMessage) error {
			return func(raw json.RawMessage) error {
				v, err := parseValue(raw)
				*dst = &v
				return err
			}
		}
		if err := decodeObject(b, map[string]func(json.RawMessage) error{"soft": value(&soft), "hard": value(&hard)}); err != nil {
			return err
		}
		if soft == nil || hard == nil {
			return fmt.Errorf("a limit written as an object needs both \"soft\" and \"hard\"")
		}
		*l = Limit{Soft: *soft, Hard: *hard}
		return nil
	}
	v, err := parseValue(b)
	if err != nil {
		return err
	}
	*l = Limit{Soft: v, Hard: v}
	return nil
}

// MarshalJSON writes a number when both values are equal, else an object.
func (l Limit) MarshalJSON() ([]byte, error) {
	if l.Soft == l.Hard {
		return valueJSON(l.Soft), nil
	}
	return []byte(`{"soft":` + string(valueJSON(l.Soft)) + `,"hard":` + string(valueJSON(l.Hard)) + `}`), nil
}

func (l Limit) String() string {
	if l.Soft == l.Hard {
		return formatValue(l.Soft)
	}
	return formatValue(l.Soft) + " soft, " + formatValue(l.Hard) + " hard"
}

func valueJSON(v uint64) []byte {
	if v == Unlimited {
		return []byte(`"unlimited"`)
	}
	return strconv.AppendUint(nil, v, 10)
}

func formatValue(v uint64) string {
	if v == Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// units are the size suffixes a limit may carry.
var units = []struct {
	suffix string
	factor uint64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}}

// parseValue parses one JSON value of a limit.
func parseValue(b []byte) (uint64, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case json.Number:
		n, err := strconv.ParseUint(v.String(), 10, 64)
		if err != nil || n == Unlimited {
			return 0, fmt.Errorf("%s is not a limit: want a whole number from 0 below 2^64-1, or \"unlimited\"", v)
		}
		return n, nil
	case string:
		if v == "unlimited" {
			return Unlimited, nil
		}
		for _, u := range units {
			if num, ok := strings.CutSuffix(v, u.suffix); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
				if err != nil || n > (Unlimited-1)/u.factor {
					break
				}
				return n * u.factor, nil
			}
		}
		return 0, fmt.Errorf("%q is not a limit: want a number, \"unlimited\", or a size such as \"512MiB\" (KiB, MiB, GiB, TiB)", v)
	default:
		return 0, fmt.Errorf("%s is not a limit: want a number, \"unlimited\", a size such as \"4GiB\", or {\"soft\": ..., \"hard\": ...}", b)
	}
}
