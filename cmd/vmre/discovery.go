package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmre/vmre/node"
)

// A running node leaves a file naming its address where the CLI's
// clients (ps, stop, start, restart, logs) look for it when no --node is
// given: $XDG_RUNTIME_DIR/vmre/node-PID.json, or, without XDG_RUNTIME_DIR,
// $TMPDIR/vmre-UID/node-PID.json. The directory is the user's alone
// (0700); the file is removed when the node stops.

// nodesDir is where nodes leave their files.
func nodesDir(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vmre")
	}
	return filepath.Join(os.TempDir(), "vmre-"+strconv.Itoa(os.Getuid()))
}

// findNode returns the one running node's file.
func findNode(getenv func(string) string) (node.Announcement, error) {
	dir := nodesDir(getenv)
	found, err := node.Discover(dir)
	if err != nil {
		return node.Announcement{}, err
	}
	switch len(found) {
	case 0:
		return node.Announcement{}, fmt.Errorf("no running node found in %s: start one (vmre node or vmre run), or name it with --node URL", dir)
	case 1:
		return found[0], nil
	}
	var urls []string
	for _, a := range found {
		urls = append(urls, fmt.Sprintf("%s (pid %d)", a.URL, a.Pid))
	}
	return node.Announcement{}, fmt.Errorf("%d nodes run: %s; choose one with --node URL", len(found), strings.Join(urls, ", "))
}
