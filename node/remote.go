package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/admin"
	"github.com/vmre/vmre/internal/atomicfile"
	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/supervise"
	"github.com/vmre/vmre/tlspin"
)

// remotes enrolls the remote VMs that the plugin directory declares
// (NAME.remote) in the engine, keeps their tokens in the data directory,
// and follows their sessions in the supervisor.
type remotes struct {
	n *Node

	mu     sync.Mutex
	byName map[string]*remoteVM
}

// remoteVM is one enrolled remote VM.
type remoteVM struct {
	en      *server.Enrollment
	version uint
}

func newRemotes(n *Node) *remotes { return &remotes{n: n, byName: make(map[string]*remoteVM)} }

// tokenPath is where a remote VM's token is kept.
func (r *remotes) tokenPath(name string) string {
	return filepath.Join(r.n.cfg.DataDir, "remote", name+".token")
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
	if !os.IsNotExist(err) {
		return "", err
	}
	t := server.NewToken()
	return t, r.keepToken(name, t)
}

// keepToken writes a token, readable by its owner alone, whole or not at
// all.
func (r *remotes) keepToken(name, token string) error {
	return atomicfile.Write(r.tokenPath(name), []byte(token+"\n"), 0o600)
}

// enroll enrolls a declared remote VM and supervises it.
func (r *remotes) enroll(ctx context.Context, d registry.Remote) error {
	n := r.n
	token, err := r.token(d.ID)
	if err != nil {
		return err
	}
	name, sup := d.ID, n.sup
	en, err := n.engine.Enroll(server.EnrollConfig{
		Name:        name,
		Token:       token,
		Initializer: server.AcceptVersions(n.cfg.Launch.HostName, d.ProtocolVersion),
		// Keep-alives as frequent as the pings: a VM that hears nothing for
		// twice as long knows its link is cut, HTTP/1.1 or not.
		KeepAlive: r.ping(),
		OnSession: func(ev server.SessionEvent) {
			if ev.Up {
				sup.RemoteUp(name, supervise.Session{Peer: ev.Peer, Addr: ev.Addr, CertSHA256: ev.CertSHA256,
					CertSPKI: ev.CertSPKI, ProtocolVersion: ev.ProtocolVersion})
				return
			}
			sup.RemoteDown(name, ev.Err)
		},
	})
	if err != nil {
		return err
	}
	rv := &remoteVM{en: en, version: d.ProtocolVersion}
	r.mu.Lock()
	r.byName[name] = rv
	r.mu.Unlock()
	n.mu.Lock()
	n.entries[name] = &entry{name: name, fromDir: true, remote: rv}
	n.mu.Unlock()
	// Admit and EndSession reach the enrollment of the moment by name, so
	// that a declaration put back after its removal is enrolled anew under
	// the same supervised VM.
	err = sup.AddRemote(supervise.RemoteSpec{Name: name,
		Admit:      func(ok bool) { r.with(name, func(rv *remoteVM) { rv.en.Admit(ok) }) },
		EndSession: func() { r.with(name, func(rv *remoteVM) { rv.en.EndSession() }) },
	})
	if err != nil {
		r.revokeOnly(name)
		return err
	}
	if n.stops.has(name) {
		n.log.Info("the remote VM stays stopped: an operator stopped it before the node restarted", "vm", name)
		if _, err := sup.Stop(ctx, name); err != nil {
			return err
		}
	}
	n.log.Info("remote VM enrolled: the admin service's GetEnrollment gives what it needs to reach the node", "vm", name, "engine", r.addr())
	return nil
}

// with calls f with the remote VM name, if it is enrolled.
func (r *remotes) with(name string, f func(*remoteVM)) {
	r.mu.Lock()
	rv := r.byName[name]
	r.mu.Unlock()
	if rv != nil {
		f(rv)
	}
}

// ping is the interval of the engine's pings of a remote VM's connection,
// which the VM's own pings follow.
func (r *remotes) ping() time.Duration {
	if p := r.n.cfg.Remote.Pings.Interval; p > 0 {
		return p
	}
	return tlspin.DefaultPings.Interval
}

func (r *remotes) addr() string {
	addr, _ := r.n.RemoteEngine()
	return addr
}

// revokeOnly refuses the remote VM's token from now on, ends its session,
// and forgets its token file, so that a declaration put back gets a new
// token: a decommissioned VM's token never works again.
func (r *remotes) revokeOnly(name string) {
	r.mu.Lock()
	rv := r.byName[name]
	delete(r.byName, name)
	r.mu.Unlock()
	if rv != nil {
		rv.en.Close()
	}
	if err := atomicfile.Remove(r.tokenPath(name)); err != nil {
		r.n.log.Warn("cannot remove the revoked token's file", "vm", name, "error", err.Error())
	}
}

// revoke revokes a remote VM whose declaration left the directory and
// forgets it.
func (n *Node) revoke(ctx context.Context, name string) {
	n.remotes.revokeOnly(name)
	n.log.Warn("the remote VM's declaration left the plugin directory: its token is refused from now on", "vm", name)
	if err := n.forget(ctx, name); err != nil {
		n.log.Error("cannot forget the revoked remote VM", "vm", name, "error", err.Error())
	}
	n.mu.Lock()
	delete(n.entries, name)
	n.mu.Unlock()
	if err := n.stops.set(name, false); err != nil {
		n.log.Warn("cannot forget the removed VM's stop in the data directory", "vm", name, "error", err.Error())
	}
}

// shutdown ends every remote VM's session because the node shuts down:
// their leases end with aborted, for their orchestrators to start them
// again once the node is back.
func (r *remotes) shutdown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rv := range r.byName {
		rv.en.Shutdown()
	}
}

// closeAll closes every enrollment, when the node stops.
func (r *remotes) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rv := range r.byName {
		rv.en.Close()
	}
}

// Enrollment implements admin.Enrollments.
func (r *remotes) Enrollment(name string) (admin.Enrollment, bool) {
	r.mu.Lock()
	rv, ok := r.byName[name]
	r.mu.Unlock()
	if !ok {
		return admin.Enrollment{}, false
	}
	addr, sum := r.n.RemoteEngine()
	return admin.Enrollment{Name: name, EngineAddr: addr, Token: rv.en.Token(), EngineCertSHA: sum, ProtocolVersion: rv.version, Ping: r.ping()}, true
}

// Rotate implements admin.Enrollments: the new token is kept before the
// old one stops working.
func (r *remotes) Rotate(name string) (admin.Enrollment, error) {
	r.mu.Lock()
	rv, ok := r.byName[name]
	r.mu.Unlock()
	if !ok {
		return admin.Enrollment{}, fmt.Errorf("no remote VM named %q", name)
	}
	old, token := rv.en.Token(), server.NewToken()
	if err := r.keepToken(name, token); err != nil {
		return admin.Enrollment{}, fmt.Errorf("keep the new token: %w", err)
	}
	if err := rv.en.Rotate(token); err != nil {
		if kerr := r.keepToken(name, old); kerr != nil { // the engine keeps the old token: so must its file
			return admin.Enrollment{}, errors.Join(err, fmt.Errorf("put the old token back: %w", kerr))
		}
		return admin.Enrollment{}, err
	}
	r.n.log.Warn("remote VM's token rotated: the old one is refused, its session ended", "vm", name)
	en, _ := r.Enrollment(name)
	return en, nil
}

// engineCertificate is Remote.Certificate, or the self-signed one kept in
// the data directory: made once, completed if a crash left its key alone.
func engineCertificate(cfg Config) (*tls.Certificate, error) {
	if cfg.Remote.Certificate != nil {
		return cfg.Remote.Certificate, nil
	}
	hosts := []string{hostOf(cfg.Remote.Advertise), hostOf(cfg.Remote.Listen)}
	cert, err := tlscert.LoadOrCreate(filepath.Join(cfg.DataDir, "engine.crt"), filepath.Join(cfg.DataDir, "engine.key"), hosts)
	if err != nil {
		return nil, fmt.Errorf("%w: the engine's TLS certificate: %w", vmre.ErrInvalidConfig, err)
	}
	return &cert, nil
}

// hostOf is the host of a host:port, or "".
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}
