package supervise

import (
	"context"
	"fmt"

	"github.com/vmre/vmre"
)

// RemoteSpec is a VM on another host (docs/REMOTE.md): the Supervisor
// starts no process for it; its orchestrator does, and its state follows
// its sessions with the node's engine, which the node reports with
// RemoteUp and RemoteDown.
type RemoteSpec struct {
	// Name names the VM.
	Name string
	// Admit lets the VM handshake (true), or ends its session and refuses
	// it (false): an operator's Start and Stop.
	Admit func(ok bool)
	// EndSession ends its current session: the VM shuts down, and its
	// orchestrator starts it again (an operator's Restart).
	EndSession func()
}

// Session is what a remote VM's session tells of it.
type Session struct {
	Peer, Addr, CertSHA256, CertSPKI string
	ProtocolVersion                  uint
}

// AddRemote starts following a remote VM, waiting for it to call.
func (s *Supervisor) AddRemote(spec RemoteSpec) error {
	if spec.Name == "" || spec.Admit == nil || spec.EndSession == nil {
		return fmt.Errorf("%w: a RemoteSpec needs a Name, Admit and EndSession", vmre.ErrInvalidConfig)
	}
	done := make(chan struct{})
	close(done) // no goroutine of its own
	v := &vm{remote: &spec, done: done, removed: make(chan struct{})}
	v.state = VM{Name: spec.Name, Remote: true, State: StateWaiting, Since: s.clock.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	if _, ok := s.vms[spec.Name]; ok {
		return fmt.Errorf("%w: a VM named %q is already supervised", vmre.ErrInvalidConfig, spec.Name)
	}
	s.vms[spec.Name] = v
	s.order = append(s.order, spec.Name)
	return nil
}

// RemoteUp reports that the remote VM name took the lease of a new
// session: it runs.
func (s *Supervisor) RemoteUp(name string, sess Session) {
	v := s.remoteVM(name)
	if v == nil {
		return
	}
	v.remoteMu.Lock()
	defer v.remoteMu.Unlock()
	if s.stateOf(v) == StateStopped {
		// Its lease began before an operator's Stop ended the session: the
		// VM stays stopped, refused until it is started.
		return
	}
	s.update(v, "connected", func(vs *VM) {
		if vs.Launches > 0 {
			vs.Restarts++
		}
		vs.Launches++
		vs.State, vs.Since, vs.Err = StateRunning, s.clock.Now(), nil
		vs.Peer, vs.Addr, vs.CertSHA256, vs.CertSPKI, vs.ProtocolVersion = sess.Peer, sess.Addr, sess.CertSHA256, sess.CertSPKI, sess.ProtocolVersion
		vs.Started = vs.Since
	})
}

// RemoteDown reports that the remote VM's session ended: lost since now,
// unless an operator stopped it.
func (s *Supervisor) RemoteDown(name string, cause error) {
	v := s.remoteVM(name)
	if v == nil {
		return
	}
	v.remoteMu.Lock()
	defer v.remoteMu.Unlock()
	s.update(v, "disconnected", func(vs *VM) {
		vs.Err = cause
		if vs.State != StateStopped {
			vs.State, vs.Since = StateLost, s.clock.Now()
		}
	})
}

// stateOf returns the VM's state.
func (s *Supervisor) stateOf(v *vm) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return v.state.State
}

func (s *Supervisor) remoteVM(name string) *vm {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[name]
	if v == nil || v.remote == nil {
		return nil
	}
	return v
}

// doRemote carries out an operator's command on a remote VM.
func (s *Supervisor) doRemote(_ context.Context, v *vm, kind commandKind) result {
	v.remoteMu.Lock()
	defer v.remoteMu.Unlock()
	state := s.stateOf(v)
	switch kind {
	case cmdStop:
		if state == StateStopped {
			return result{}
		}
		v.remote.Admit(false)
		s.update(v, "stopped on request: its handshakes are refused until it is started", func(vs *VM) { vs.State = StateStopped })
		return result{changed: true}
	case cmdStart:
		if state != StateStopped {
			return result{}
		}
		v.remote.Admit(true)
		s.update(v, "started: waiting for it to call", func(vs *VM) { vs.State = StateWaiting })
		return result{changed: true}
	}
	v.remote.EndSession() // cmdRestart: its orchestrator starts it again
	return result{changed: true}
}
