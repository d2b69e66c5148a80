package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/safetext"
)

// aliasTable is the aliases file, read and checked on its own: which VM ID
// each usable alias names.
type aliasTable struct {
	// target maps each usable alias to its VM ID.
	target map[string]string
	// listed maps each VM ID of the file to the aliases it lists, usable or
	// not, for the check of unknown VMs.
	listed map[string][]string
}

// readAliases reads the aliases file at path ("" for none), in AvalancheGo's
// format: {"<vmID>": ["alias", ...], ...}.
func readAliases(path string) (aliasTable, []*Problem) {
	t := aliasTable{target: map[string]string{}, listed: map[string][]string{}}
	if path == "" {
		return t, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		err = fmt.Errorf("read the aliases file: %w; the VMs load under their IDs alone", err)
		return t, []*Problem{{Entry: path, Kind: kindUnreadable, Err: err}}
	}
	var file map[string][]string
	if err := json.Unmarshal(data, &file); err != nil {
		err = fmt.Errorf("%w: the aliases file is not a JSON object of VM IDs to lists of aliases ({\"vmID\": [\"alias\"]}): %v; the VMs load under their IDs alone",
			vmre.ErrInvalidConfig, err)
		return t, []*Problem{{Entry: path, Kind: kindMalformed, Err: err}}
	}
	return checkAliases(file, path)
}

// checkAliases keeps the aliases that name one VM and are not themselves a
// VM ID of the file.
func checkAliases(file map[string][]string, source string) (aliasTable, []*Problem) {
	t := aliasTable{target: map[string]string{}, listed: map[string][]string{}}
	var problems []*Problem
	owners := map[string][]string{} // alias -> the IDs listing it
	for _, id := range slices.Sorted(maps.Keys(file)) {
		if id == "" {
			problems = append(problems, &Problem{Entry: source, Kind: kindMalformed,
				Err: fmt.Errorf("%w: the aliases file gives aliases to an empty VM ID", vmre.ErrInvalidConfig)})
			continue
		}
		if !safetext.Printable(id) {
			problems = append(problems, &Problem{Entry: id, Kind: kindBadName,
				Err: badName("the aliases file's VM ID", id, "fix it in "+source)})
			continue
		}
		t.listed[id] = file[id]
		for _, alias := range file[id] {
			switch {
			case !safetext.Printable(alias):
				problems = append(problems, &Problem{Entry: alias, ID: id, Kind: kindBadName,
					Err: badName("the aliases file's alias", alias, "fix it in "+source)})
			case alias == id:
				// A VM's own ID as its alias adds nothing.
			case strings.TrimSpace(alias) == "":
				problems = append(problems, &Problem{Entry: source, ID: id, Kind: kindMalformed,
					Err: fmt.Errorf("%w: VM %s has an empty alias in the aliases file", vmre.ErrInvalidConfig, id)})
			case !slices.Contains(owners[alias], id):
				owners[alias] = append(owners[alias], id)
			}
		}
	}
	for _, alias := range slices.Sorted(maps.Keys(owners)) {
		ids := owners[alias]
		switch {
		case len(ids) > 1:
			problems = append(problems, &Problem{Entry: alias, Kind: kindDuplicateAlias,
				Err: fmt.Errorf("%w: alias %q is given to VMs %s in the aliases file; it names none of them: keep it under one",
					vmre.ErrInvalidConfig, alias, strings.Join(ids, " and "))})
		case file[alias] != nil:
			problems = append(problems, &Problem{Entry: alias, ID: ids[0], Kind: kindNameCollision,
				Err: fmt.Errorf("%w: alias %q of VM %s is also a VM ID of the aliases file; it names neither as an alias: rename the alias",
					vmre.ErrInvalidConfig, alias, ids[0])})
		default:
			t.target[alias] = ids[0]
		}
	}
	return t, problems
}

// idOf returns the VM ID of a directory entry: its name less an extension,
// or, when that is an alias, the VM the alias names (AvalancheGo looks a
// plugin's name up as an alias first, so a file may be named by its alias).
func (t aliasTable) idOf(stem string) string {
	if id, ok := t.target[stem]; ok {
		return id
	}
	return stem
}

// aliasesOf returns the usable aliases of a VM, sorted.
func (t aliasTable) aliasesOf(id string) []string {
	var out []string
	for alias, target := range t.target {
		if target == id {
			out = append(out, alias)
		}
	}
	slices.Sort(out)
	return out
}
