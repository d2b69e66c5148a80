package registry

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/safetext"
)

// candidate is a directory entry that may be a VM: a regular executable
// file that is not a dotfile.
type candidate struct {
	file string // its name in the directory
	path string // its absolute path
	id   string
}

// listing is what a scan of the directory found.
type listing struct {
	candidates []candidate
	remotes    []candidate     // NAME.remote declarations
	names      map[string]bool // every entry's name, skipped or not
	problems   []*Problem
}

// scanDir lists the plugin directory. Directories and dotfiles are skipped
// (logged at debug level); any other entry that is not a regular executable
// file is a problem.
func scanDir(dir string, aliases aliasTable, log *slog.Logger) (listing, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return listing{}, fmt.Errorf("read the plugin directory: %w", err)
	}
	l := listing{names: map[string]bool{}}
	for _, e := range entries {
		name := e.Name()
		l.names[name] = true
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			log.Debug("skipped a dotfile of the plugin directory", slog.String("file", name))
			continue
		}
		if p := checkName(name); p != nil {
			l.problems = append(l.problems, p)
			continue
		}
		id := aliases.idOf(strings.TrimSuffix(name, filepath.Ext(name)))
		info, err := os.Stat(path) // follows a symlink to its target
		if err != nil {
			l.problems = append(l.problems, &Problem{Entry: name, ID: id, Kind: kindUnreadable,
				Err: fmt.Errorf("stat: %w", err)})
			continue
		}
		if info.IsDir() {
			log.Debug("skipped a directory of the plugin directory", slog.String("file", name))
			continue
		}
		if filepath.Ext(name) == RemoteExt && info.Mode().IsRegular() {
			l.remotes = append(l.remotes, candidate{file: name, path: path, id: strings.TrimSuffix(name, RemoteExt)})
			continue
		}
		if p := checkMode(name, id, info); p != nil {
			l.problems = append(l.problems, p)
			continue
		}
		l.candidates = append(l.candidates, candidate{file: name, path: path, id: id})
	}
	return l, nil
}

// checkMode refuses what is not a regular executable file.
func checkMode(name, id string, info fs.FileInfo) *Problem {
	if !info.Mode().IsRegular() {
		return &Problem{Entry: name, ID: id, Kind: kindNotRegular,
			Err: fmt.Errorf("not a regular file (mode %v): a VM is an executable file; move it out of the plugin directory", info.Mode())}
	}
	if !isExecutable(info) {
		return &Problem{Entry: name, ID: id, Kind: kindNotExecutable,
			Err: fmt.Errorf("not executable (mode %v): %s: %w", info.Mode(), executableHint, fs.ErrPermission)}
	}
	return nil
}

// checkName refuses a file name that cannot be a VM's name: one that is
// not valid UTF-8 (protobuf strings and Prometheus labels must be) or that
// holds a control character, which a terminal would act on. The Problem
// names the file escaped, as the node's log does.
func checkName(name string) *Problem {
	if safetext.Printable(name) {
		return nil
	}
	return &Problem{Entry: safetext.Terminal(name), Kind: kindBadName,
		Err: badName("the file name", name, "rename the file (ls -b shows its bytes)")}
}

// badName says why name, the name of what, cannot name a VM, and fix what
// to do.
func badName(what, name, fix string) error {
	why := "holds a control character"
	if !utf8.ValidString(name) {
		why = "is not valid UTF-8"
	}
	return fmt.Errorf("%w: %s %s %s, and a VM's name is shown in logs, on terminals, in metric labels and in the admin API: %s",
		vmre.ErrInvalidConfig, what, safetext.Terminal(name), why, fix)
}
