package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
)

// remotes enrolls the remote VMs that a plugin directory declares
// (NAME.remote) in the engine, keeps their tokens in the node's data
// directory, and follows their sessions in the supervisor.
type remotes struct {
	dataDir  string
	addr     string // the engine's TLS address, which the VMs dial
	certSum  string // its certificate's fingerprint
	hostName string
	log      *slog.Logger
	engine   *server.Engine        // set once the host is built
	sup      *supervise.Supervisor // likewise

	mu     sync.Mutex
	byName map[string]*remoteVM
}

type remoteVM struct {
	en      *server.Enrollment
	version uint
}

// tokenPath is where a remote VM's token is kept.
func (r *remotes) tokenPath(name string) string {
	return filepath.Join(r.dataDir, "remote", name+".token")
}

// token reads the VM's token, or makes and keeps one.
func (r *remotes) token(name string) (string, error) {
	b, err := os.ReadFile(r.tokenPath(name))
	if err == nil {
		if t := strings.TrimSpace(string(b)); len(t) >= server.MinTokenLen {
			return t, nil
		}
		return "", fmt.Errorf("the token file %s holds no token of %d characters or more: remove it, and a new one is made", r.tokenPath(name), server.MinTokenLen)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	t := server.NewToken()
	return t, r.keep(name, t)
}

// keep writes a token, readable by its owner alone, in one rename.
func (r *remotes) keep(name, token string) error {
	path := r.tokenPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// apply enrolls the declared remote VMs it does not know yet. One whose
// declaration left the directory stays enrolled until the node stops.
func (r *remotes) apply(declared []registry.Remote) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range declared {
		if _, ok := r.byName[d.ID]; ok {
			continue
		}
		if err := r.enroll(d); err != nil {
			r.log.Error("cannot enroll the remote VM; skipped", "vm", d.ID, "error", err.Error())
		}
	}
}

func (r *remotes) enroll(d registry.Remote) error {
	if r.engine == nil {
		return errors.New("the node has no TLS engine for remote VMs: start it with --engine-listen ADDR")
	}
	token, err := r.token(d.ID)
	if err != nil {
		return err
	}
	name, sup := d.ID, r.sup
	en, err := r.engine.Enroll(server.EnrollConfig{
		Name:        name,
		Token:       token,
		Initializer: server.AcceptVersions(r.hostName, d.ProtocolVersion),
		OnSession: func(ev server.SessionEvent) {
			if ev.Up {
				sup.RemoteUp(name, supervise.Session{Peer: ev.Peer, Addr: ev.Addr, CertSHA256: ev.CertSHA256, ProtocolVersion: ev.ProtocolVersion})
				return
			}
			sup.RemoteDown(name, ev.Err)
		},
	})
	if err != nil {
		return err
	}
	if err := sup.AddRemote(supervise.RemoteSpec{Name: name, Admit: en.Admit, EndSession: en.EndSession}); err != nil {
		en.Close()
		return err
	}
	if r.byName == nil {
		r.byName = make(map[string]*remoteVM)
	}
	r.byName[name] = &remoteVM{en: en, version: d.ProtocolVersion}
	r.log.Info("remote VM enrolled: vmre remote env NAME prints its environment", "vm", name, "engine", r.addr)
	return nil
}

// Enrollment implements admin.Enrollments.
func (r *remotes) Enrollment(name string) (admin.Enrollment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vm, ok := r.byName[name]
	if !ok {
		return admin.Enrollment{}, false
	}
	return admin.Enrollment{Name: name, EngineAddr: r.addr, Token: vm.en.Token(), EngineCertSHA: r.certSum, ProtocolVersion: vm.version}, true
}

// Rotate implements admin.Enrollments: the new token is kept before the
// old one stops working.
func (r *remotes) Rotate(name string) (admin.Enrollment, error) {
	r.mu.Lock()
	vm, ok := r.byName[name]
	r.mu.Unlock()
	if !ok {
		return admin.Enrollment{}, fmt.Errorf("no remote VM named %q", name)
	}
	old, token := vm.en.Token(), server.NewToken()
	if err := r.keep(name, token); err != nil {
		return admin.Enrollment{}, fmt.Errorf("keep the new token: %w", err)
	}
	if err := vm.en.Rotate(token); err != nil {
		if kerr := r.keep(name, old); kerr != nil { // the engine keeps the old token: so must its file
			return admin.Enrollment{}, errors.Join(err, fmt.Errorf("put the old token back: %w", kerr))
		}
		return admin.Enrollment{}, err
	}
	r.log.Warn("remote VM's token rotated: the old one is refused, its session ended", "vm", name)
	en, _ := r.Enrollment(name)
	return en, nil
}
