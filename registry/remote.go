package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmre/vmre"
)

// RemoteExt is the extension of a remote VM's declaration in the plugin
// directory: NAME.remote declares the VM NAME, which runs on another host
// and handshakes with the node over TLS (docs/REMOTE.md).
const RemoteExt = ".remote"

// maxRemoteBytes caps a declaration: it holds a few fields.
const maxRemoteBytes = 4 << 10

// Remote is a VM that runs on another host: the node does not start it;
// it enrolls it, and the VM calls back.
type Remote struct {
	// ID is the VM's name: the file's name less ".remote".
	ID string
	// File is the declaration's file name in the plugin directory.
	File string
	// ProtocolVersion is the version the VM must speak (default: this
	// release's).
	ProtocolVersion uint
}

// remoteFile is a declaration's JSON.
type remoteFile struct {
	ProtocolVersion uint `json:"protocol_version"`
}

// readRemote reads a declaration file: a JSON object, {} or
// {"protocol_version": N}, unknown fields refused.
func readRemote(c candidate) (Remote, *Problem) {
	fail := func(kind Kind, err error) (Remote, *Problem) {
		return Remote{}, &Problem{Entry: c.file, ID: c.id, Kind: kind, Err: err}
	}
	f, err := os.Open(c.path)
	if err != nil {
		return fail(kindUnreadable, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRemoteBytes+1))
	if err != nil {
		return fail(kindUnreadable, err)
	}
	if len(b) > maxRemoteBytes {
		return fail(kindMalformed, fmt.Errorf("%w: a remote declaration of more than %d bytes", vmre.ErrInvalidConfig, maxRemoteBytes))
	}
	var rf remoteFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil && !errors.Is(err, io.EOF) {
		return fail(kindMalformed, fmt.Errorf("%w: a remote declaration is a JSON object such as {\"protocol_version\": 1}: %v", vmre.ErrInvalidConfig, err))
	}
	if rf.ProtocolVersion == 0 {
		rf.ProtocolVersion = vmre.ProtocolVersion
	}
	return Remote{ID: c.id, File: c.file, ProtocolVersion: rf.ProtocolVersion}, nil
}
