package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A running node leaves a file naming its address where the CLI's
// clients (ps, stop, start, restart, logs) look for it when no --node is
// given: $XDG_RUNTIME_DIR/vmre/node-PID.json, or, without XDG_RUNTIME_DIR,
// $TMPDIR/vmre-UID/node-PID.json. The directory is the user's alone
// (0700); the file is removed when the node stops.

// nodeFile is what a node leaves for the CLI.
type nodeFile struct {
	URL       string `json:"url"`
	Pid       int    `json:"pid"`
	TokenFile string `json:"token_file,omitempty"` // the node's --admin-token-file, absolute
}

// nodesDir is where nodes leave their files.
func nodesDir(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vmre")
	}
	return filepath.Join(os.TempDir(), "vmre-"+strconv.Itoa(os.Getuid()))
}

// announceNode writes the node's file and returns the function that
// removes it.
func announceNode(getenv func(string) string, nf nodeFile) (remove func(), err error) {
	dir := nodesDir(getenv)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b, err := json.Marshal(nf)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "node-"+strconv.Itoa(nf.Pid)+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// findNode returns the one running node's file. Files of nodes that are
// gone (killed, so they could not remove them) are removed.
func findNode(getenv func(string) string) (nodeFile, error) {
	dir := nodesDir(getenv)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nodeFile{}, err
	}
	var found []nodeFile
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "node-") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var nf nodeFile
		if json.Unmarshal(b, &nf) != nil || nf.URL == "" {
			continue
		}
		if errors.Is(syscall.Kill(nf.Pid, 0), syscall.ESRCH) {
			os.Remove(path) // its node was killed
			continue
		}
		found = append(found, nf)
	}
	switch len(found) {
	case 0:
		return nodeFile{}, fmt.Errorf("no running node found in %s: start one (vmre node or vmre run), or name it with --node URL", dir)
	case 1:
		return found[0], nil
	}
	var urls []string
	for _, nf := range found {
		urls = append(urls, fmt.Sprintf("%s (pid %d)", nf.URL, nf.Pid))
	}
	return nodeFile{}, fmt.Errorf("%d nodes run: %s; choose one with --node URL", len(found), strings.Join(urls, ", "))
}
