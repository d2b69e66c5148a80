package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vmre/vmre/internal/atomicfile"
)

// stopsFile is the file of the data directory that lists the VMs an
// operator stopped: they stay stopped across a restart of the node.
const stopsFile = "stopped.json"

// stopRecord is the set of VMs stopped on purpose, kept in the data
// directory when the node has one.
type stopRecord struct {
	path string // "" without a data directory: kept in memory only

	mu      sync.Mutex
	stopped map[string]bool
}

// stopsJSON is the file's content.
type stopsJSON struct {
	// Stopped are the VMs an operator stopped, by name, sorted.
	Stopped []string `json:"stopped"`
}

// loadStops reads the record of dataDir, or starts an empty one.
func loadStops(dataDir string) (*stopRecord, error) {
	r := &stopRecord{stopped: map[string]bool{}}
	if dataDir == "" {
		return r, nil
	}
	r.path = filepath.Join(dataDir, stopsFile)
	b, err := os.ReadFile(r.path)
	switch {
	case os.IsNotExist(err):
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("the record of stopped VMs: %w", err)
	}
	var j stopsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("the record of stopped VMs %s is not {\"stopped\": [NAME, ...]}: %w; fix it, or remove it to forget the stops", r.path, err)
	}
	for _, name := range j.Stopped {
		r.stopped[name] = true
	}
	return r, nil
}

// has reports whether an operator stopped name.
func (r *stopRecord) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped[name]
}

// set records that name is stopped on purpose (on) or not, and keeps the
// record, whole, before it returns.
func (r *stopRecord) set(name string, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped[name] == on {
		return nil
	}
	if on {
		r.stopped[name] = true
	} else {
		delete(r.stopped, name)
	}
	if r.path == "" {
		return nil
	}
	j := stopsJSON{Stopped: slices.Sorted(func(yield func(string) bool) {
		for name := range r.stopped {
			if !yield(name) {
				return
			}
		}
	})}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(r.path, append(b, '\n'), 0o600)
}
