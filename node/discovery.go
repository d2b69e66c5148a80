package node

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmre/vmre/internal/atomicfile"
)

// A running node leaves a file naming its URL in its DiscoveryDir
// (node-PID.json), where the CLI's clients (vmre ps, stop, ...) look for
// it when they are given no URL. The file is removed when Run returns;
// Discover removes those of nodes that were killed.

// Announcement is what a node's discovery file holds.
type Announcement struct {
	// URL is the node's HTTP address, such as http://127.0.0.1:8080.
	URL string `json:"url"`
	// Pid is the node's process.
	Pid int `json:"pid"`
	// TokenFile is the absolute path of the file holding the node's admin
	// token, when it has one.
	TokenFile string `json:"token_file,omitempty"`
}

// announce writes the node's discovery file and returns the function that
// removes it. A file that cannot be written is logged: the clients can
// still be given the URL.
func (n *Node) announce() (remove func()) {
	a := Announcement{URL: "http://" + n.cfg.Addr, Pid: os.Getpid(), TokenFile: n.cfg.AdminTokenFile}
	if a.TokenFile != "" {
		if abs, err := filepath.Abs(a.TokenFile); err == nil {
			a.TokenFile = abs
		}
	}
	b, err := json.Marshal(a)
	path := filepath.Join(n.cfg.DiscoveryDir, "node-"+strconv.Itoa(a.Pid)+".json")
	if err == nil {
		err = atomicfile.Write(path, append(b, '\n'), 0o600)
	}
	if err != nil {
		n.log.Warn("cannot leave the node's address for vmre ps and the other clients; give them --node",
			"url", a.URL, "error", err.Error())
		return func() {}
	}
	return func() { os.Remove(path) }
}

// Discover returns the discovery files of the nodes that run, in dir.
// Files of nodes that are gone (killed, so they could not remove them) are
// removed.
func Discover(dir string) ([]Announcement, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var found []Announcement
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "node-") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var a Announcement
		if json.Unmarshal(b, &a) != nil || a.URL == "" {
			continue
		}
		if processGone(a.Pid) {
			os.Remove(path) // its node was killed
			continue
		}
		found = append(found, a)
	}
	return found, nil
}
