package main

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
)

// vm is what GET /v1/vms reads of a VM; *launcher.Runtime has it all.
type vm interface {
	Name() string
	Status() vmre.Status
	ProtocolVersion() uint
	Started() time.Time
	HandshakeDuration() time.Duration
	Exit() (launcher.Exit, bool)
}

// vmRegistry holds the VMs that the node launched, for GET /v1/vms. It is
// the launcher's Tracker: the launcher adds each VM once its handshake
// has succeeded.
type vmRegistry struct {
	mu  sync.Mutex
	vms []vm
}

var _ vmre.Tracker = (*vmRegistry)(nil)

// TrackRuntime adds a runtime that can tell what GET /v1/vms shows; it
// ignores others.
func (v *vmRegistry) TrackRuntime(r vmre.Stopper) {
	if r, ok := r.(vm); ok {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.vms = append(v.vms, r)
	}
}

// vmJSON is one VM in GET /v1/vms.
type vmJSON struct {
	Name            string    `json:"name"`
	Pid             int       `json:"pid"`
	Addr            string    `json:"addr"`
	State           string    `json:"state"` // running or exited
	ProtocolVersion uint      `json:"protocol_version"`
	StartedAt       time.Time `json:"started_at"`
	HandshakeMS     float64   `json:"handshake_ms"`
	Exit            *exitJSON `json:"exit,omitempty"` // how it ended, once exited
}

// exitJSON is how a VM ended.
type exitJSON struct {
	Code    int     `json:"code"`             // -1 when a signal ended it
	Signal  string  `json:"signal,omitempty"` // e.g. "terminated", "killed"
	Stage   string  `json:"stage"`            // none, shutdown, sigterm or sigkill: how far the stop sequence went
	RanMS   float64 `json:"ran_ms"`
	Summary string  `json:"summary"` // e.g. "exit code 0 after 1.2s (stopped by SIGTERM)"
}

func newExitJSON(exit launcher.Exit) *exitJSON {
	return &exitJSON{Code: exit.Code, Signal: exit.Signal, Stage: exit.Stage.String(), RanMS: ms(exit.Ran), Summary: exit.String()}
}

func (v *vmRegistry) list() []vmJSON {
	v.mu.Lock()
	runtimes := append([]vm(nil), v.vms...)
	v.mu.Unlock()
	out := make([]vmJSON, 0, len(runtimes))
	for _, r := range runtimes {
		vm := vmJSON{
			Name:            r.Name(),
			Pid:             r.Status().Pid,
			Addr:            r.Status().Addr,
			State:           "running",
			ProtocolVersion: r.ProtocolVersion(),
			StartedAt:       r.Started().UTC(),
			HandshakeMS:     ms(r.HandshakeDuration()),
		}
		if exit, ok := r.Exit(); ok {
			vm.State = "exited"
			vm.Exit = newExitJSON(exit)
		}
		out = append(out, vm)
	}
	return out
}

// ServeHTTP serves GET /v1/vms: a JSON array, never null.
func (v *vmRegistry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v.list())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
