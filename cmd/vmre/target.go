package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmre/vmre/node"
)

// Choosing the node a client talks to. A running node leaves a file naming
// its URL, name, pid, start time and token file where the clients look for
// it: $XDG_RUNTIME_DIR/vmre/node-PID.json, or, without XDG_RUNTIME_DIR,
// $TMPDIR/vmre-UID/node-PID.json. The directory is the user's alone
// (0700); the file is removed when the node stops. A client talks to the
// node of --node, else of VMRE_NODE (as DOCKER_HOST and NOMAD_ADDR), else
// the one node that runs: a URL (or host:port), or a node's name or pid.

// nodeEnv is the variable that names the node of every client command.
const nodeEnv = "VMRE_NODE"

// nodesDir is where nodes leave their files.
func nodesDir(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vmre")
	}
	return filepath.Join(os.TempDir(), "vmre-"+strconv.Itoa(os.Getuid()))
}

// usageError is a client's error that is the user's to fix by choosing:
// exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// noNodeError: no node runs where the clients look; exit code 8.
type noNodeError struct{ dir string }

func (e *noNodeError) Error() string {
	return "no running node found in " + e.dir + ": start one (vmre node or vmre run), or name it with --node URL or " + nodeEnv
}

// target is the node a client talks to.
type target struct {
	url       string
	tokenFile string // the node's, from its discovery file, unless --admin-token-file
}

// chooseNode finds the node of --node, VMRE_NODE, or the one that runs.
func chooseNode(given string, getenv func(string) string) (target, error) {
	from := "--node"
	if given == "" {
		given, from = getenv(nodeEnv), nodeEnv
	}
	dir := nodesDir(getenv)
	found, err := node.Discover(dir)
	if err != nil && given == "" {
		return target{}, err
	}
	if given == "" {
		switch len(found) {
		case 0:
			return target{}, &noNodeError{dir: dir}
		case 1:
			return target{url: found[0].URL, tokenFile: found[0].TokenFile}, nil
		}
		return target{}, &usageError{fmt.Sprintf("%d nodes run; choose one with --node URL|NAME|PID or %s=URL|NAME|PID:\n%s",
			len(found), nodeEnv, nodeTable(found))}
	}
	if isURL(given) {
		url := normalURL(given)
		for _, a := range found {
			if normalURL(a.URL) == url {
				return target{url: url, tokenFile: a.TokenFile}, nil
			}
		}
		return target{url: url}, nil
	}
	var match []node.Announcement
	for _, a := range found {
		if a.Name == given || strconv.Itoa(a.Pid) == given {
			match = append(match, a)
		}
	}
	switch len(match) {
	case 1:
		return target{url: match[0].URL, tokenFile: match[0].TokenFile}, nil
	case 0:
		if len(found) == 0 {
			return target{}, &usageError{fmt.Sprintf("%s %q names no running node: none runs here (%s); give a URL", from, given, dir)}
		}
		return target{}, &usageError{fmt.Sprintf("%s %q names no running node; these run:\n%s", from, given, nodeTable(found))}
	}
	return target{}, &usageError{fmt.Sprintf("%s %q names %d nodes; choose one by its URL or pid:\n%s", from, given, len(match), nodeTable(match))}
}

// isURL tells a URL or host:port from a node's name or pid.
func isURL(s string) bool { return strings.Contains(s, "://") || strings.Contains(s, ":") }

// normalURL is a node's URL as the clients compare them: a scheme, no
// trailing slash.
func normalURL(s string) string {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return strings.TrimRight(s, "/")
}

// nodeTable lists nodes, one a line: URL, name, pid, and since when.
func nodeTable(nodes []node.Announcement) string {
	var rows [][]string
	for _, a := range nodes {
		name, since := a.Name, "-"
		if name == "" {
			name = "-"
		}
		if !a.Started.IsZero() {
			since = a.Started.Local().Format(time.RFC3339) + " (" + humanDuration(time.Since(a.Started)) + " ago)"
		}
		rows = append(rows, []string{a.URL, name, strconv.Itoa(a.Pid), since})
	}
	var b strings.Builder
	table(&b, []string{"URL", "NAME", "PID", "STARTED"}, rows, nil, "  ")
	return strings.TrimRight(b.String(), "\n")
}
