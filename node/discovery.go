package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmre/vmre/internal/atomicfile"
)

// A running node leaves a file naming its URL in its DiscoveryDir, where
// the CLI's clients (vmre ps, stop, ...) look for it when they are given
// no URL. The file is keyed by the node's network namespace as well as its
// pid (node-net4026531992-PID.json on Linux, node-PID.json elsewhere): the
// URL is a loopback address, which only a client in the same namespace
// reaches, and Discover finds only those. The file is removed when Run
// returns; Discover removes those of nodes that were killed.

// Announcement is what a node's discovery file holds.
type Announcement struct {
	// URL is the node's HTTP address, such as http://127.0.0.1:8080.
	URL string `json:"url"`
	// Name is the node's name (Config.Name), by which a client may choose
	// it; "" when it has none.
	Name string `json:"name,omitempty"`
	// Pid is the node's process.
	Pid int `json:"pid"`
	// Started is when the node started serving.
	Started time.Time `json:"started"`
	// TokenFile is the absolute path of the file holding the node's admin
	// token, when it has one.
	TokenFile string `json:"token_file,omitempty"`
	// NetNS is the node's network namespace, as /proc/PID/ns/net names it
	// ("net:[4026531992]"); "" where there are none.
	NetNS string `json:"netns,omitempty"`
}

// ElsewhereError is Discover's error when no node runs in the caller's
// network namespace but some run in others, whose loopback addresses the
// caller cannot reach.
type ElsewhereError struct {
	// NetNS is the caller's namespace; Nodes are the nodes of the others.
	NetNS string
	Nodes []Announcement
}

func (e *ElsewhereError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no node runs in this network namespace (%s), whose loopback addresses are the only ones a node's URL names; %d run in others:", e.NetNS, len(e.Nodes))
	for i, a := range e.Nodes {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " pid %d in %s at %s", a.Pid, a.NetNS, a.URL)
	}
	b.WriteString(": run the client in the node's namespace (nsenter --net=/proc/PID/ns/net, or ip netns exec NAME)")
	return b.String()
}

// announced counts the nodes of this process that left a file: the first
// writes its discoveryName, the next one with -2 before .json, and so on,
// so that two nodes of one process (an embedder's, a test's) each have
// theirs.
var announced atomic.Int64

// announce writes the node's discovery file and returns the function that
// removes it. A file that cannot be written is logged: the clients can
// still be given the URL.
func (n *Node) announce() (remove func()) {
	a := Announcement{URL: "http://" + n.cfg.Addr, Name: n.cfg.Name, Pid: os.Getpid(), Started: time.Now().UTC(),
		TokenFile: n.cfg.AdminTokenFile, NetNS: netNamespace()}
	if a.TokenFile != "" {
		if abs, err := filepath.Abs(a.TokenFile); err == nil {
			a.TokenFile = abs
		}
	}
	b, err := json.Marshal(a)
	file := discoveryName(a)
	if seq := announced.Add(1); seq > 1 {
		file = strings.TrimSuffix(file, ".json") + "-" + strconv.FormatInt(seq, 10) + ".json"
	}
	path := filepath.Join(n.cfg.DiscoveryDir, file)
	if err == nil {
		err = atomicfile.Write(path, append(b, '\n'), 0o600)
	}
	if err != nil {
		n.log.Warn("cannot leave the node's discovery file: its clients must be given its URL",
			"url", a.URL, "error", err.Error())
		return func() {}
	}
	return func() { os.Remove(path) }
}

// discoveryName is the name of a's file: keyed by its network namespace's
// inode, then its pid.
func discoveryName(a Announcement) string {
	ino := strings.TrimSuffix(strings.TrimPrefix(a.NetNS, "net:["), "]")
	if ino == "" || strings.Trim(ino, "0123456789") != "" {
		return "node-" + strconv.Itoa(a.Pid) + ".json"
	}
	return "node-net" + ino + "-" + strconv.Itoa(a.Pid) + ".json"
}

// Discover returns the discovery files of the nodes that run in dir and
// in the caller's network namespace. Files of nodes that are gone (killed,
// so they could not remove them) are removed. When none runs in the
// caller's namespace but some run in others, the error is an
// *ElsewhereError that names them.
func Discover(dir string) ([]Announcement, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var found, elsewhere []Announcement
	here := netNamespace()
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
		if a.NetNS != "" && here != "" && a.NetNS != here {
			elsewhere = append(elsewhere, a) // its loopback is not ours
			continue
		}
		found = append(found, a)
	}
	if len(found) == 0 && len(elsewhere) > 0 {
		return nil, &ElsewhereError{NetNS: here, Nodes: elsewhere}
	}
	return found, nil
}
