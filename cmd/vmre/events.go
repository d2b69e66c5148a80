package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// eventLog writes what happens to the VMs as JSON lines, one per event:
// the machine-readable output of --events, for scripts and tests that must
// not read log text. Its records come from the launcher's hooks.
type eventLog struct {
	mu  sync.Mutex
	enc *json.Encoder
	c   io.Closer // the file --events opened, or nil
}

// event is one line of the event log. Fields that do not apply are left out.
type event struct {
	Time            time.Time `json:"time"`
	Event           string    `json:"event"`
	VM              string    `json:"vm,omitempty"`
	Pid             int       `json:"pid,omitempty"`
	Addr            string    `json:"addr,omitempty"`
	Path            string    `json:"path,omitempty"`
	ProtocolVersion uint      `json:"protocol_version,omitempty"`
	ElapsedMS       float64   `json:"elapsed_ms,omitempty"`
	Procedure       string    `json:"procedure,omitempty"`
	Protocol        string    `json:"protocol,omitempty"`
	Peer            string    `json:"peer,omitempty"`
	Result          string    `json:"result,omitempty"`
	Phase           string    `json:"phase,omitempty"`
	Stage           string    `json:"stage,omitempty"`
	Reason          string    `json:"reason,omitempty"`
	Stream          string    `json:"stream,omitempty"`
	Truncated       int       `json:"truncated,omitempty"`
	Unread          bool      `json:"unread,omitempty"`
	Exit            *exitJSON `json:"exit,omitempty"`
	State           string    `json:"state,omitempty"`
	CertSHA256      string    `json:"cert_sha256,omitempty"`
	CertSPKI        string    `json:"cert_spki_sha256,omitempty"`
	Attempt         int       `json:"attempt,omitempty"`
	DelayMS         float64   `json:"delay_ms,omitempty"`
	Error           string    `json:"error,omitempty"`
	// A reload of vmre node's plugin directory.
	Added     []string `json:"added,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Failed    []string `json:"failed,omitempty"`
	KnownBad  []string `json:"known_bad,omitempty"`
	// A rollout: the digests of the version before and of the new one.
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	ID       uint64 `json:"id,omitempty"`
}

// openEventLog opens --events: "" for none, "-" for stdout, else a file
// that is created or truncated.
func openEventLog(path string, stdout io.Writer) (*eventLog, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return &eventLog{enc: json.NewEncoder(stdout)}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--events: %w", err)
	}
	return &eventLog{enc: json.NewEncoder(f), c: f}, nil
}

// close closes the file of --events.
func (l *eventLog) close() {
	if l != nil && l.c != nil {
		l.c.Close()
	}
}

// write stamps and writes ev; a nil log writes nothing.
func (l *eventLog) write(ev event) {
	if l == nil {
		return
	}
	ev.Time = time.Now().UTC()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.enc.Encode(ev) // a reader that went away must not stop the host
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hooks returns the launcher hooks that write the event log, or nil.
func (l *eventLog) hooks() *launcher.Hooks {
	if l == nil {
		return nil
	}
	return &launcher.Hooks{
		Started: func(i launcher.StartedInfo) {
			l.write(event{Event: "started", VM: i.VM, Pid: i.Pid, Path: i.Path, ElapsedMS: ms(i.Exec)})
		},
		EngineCall: func(i launcher.EngineCallInfo) {
			l.write(event{Event: "engine_call", VM: i.VM, Pid: i.Pid, Procedure: i.Procedure, Protocol: i.Protocol,
				Peer: i.Peer, Addr: i.Addr, ProtocolVersion: i.ProtocolVersion, Result: i.Result(), Error: errText(i.Err)})
		},
		Handshake: func(i launcher.HandshakeInfo) {
			l.write(event{Event: "handshake", VM: i.VM, Pid: i.Pid, Addr: i.Addr, ProtocolVersion: i.ProtocolVersion, ElapsedMS: ms(i.Elapsed)})
		},
		Ready: func(i launcher.ReadyInfo) {
			l.write(event{Event: "ready", VM: i.VM, Pid: i.Pid, Addr: i.Addr, ProtocolVersion: i.ProtocolVersion, ElapsedMS: ms(i.Elapsed)})
		},
		LaunchFailed: func(err *launcher.LaunchError) {
			l.write(event{Event: "launch_failed", VM: err.VM, Pid: err.Pid, Path: err.Path, Phase: err.Phase.String(), Error: err.Error()})
		},
		StopStage: func(i launcher.StopStageInfo) {
			l.write(event{Event: "stop_stage", VM: i.VM, Pid: i.Pid, Stage: i.Stage.String(), Reason: i.Reason.String(), Error: errText(i.Err)})
		},
		Exited: func(i launcher.ExitInfo) {
			l.write(event{Event: "exited", VM: i.VM, Pid: i.Pid, Exit: newExitJSON(i.Exit)})
		},
		OutputDropped: func(i launcher.OutputDropInfo) {
			l.write(event{Event: "output_dropped", VM: i.VM, Pid: i.Pid, Stream: i.Stream, Truncated: i.Truncated, Unread: i.Unread})
		},
	}
}

// exitJSON is how a VM ended, in an exited event.
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// nodeHooks are the node's hooks that write the event log: each change of
// a VM's state, each load of the plugin directory, the engine's TLS
// listener. changed, when not nil, gets a value after every change of
// state, every load of the plugin directory and once the node serves, for
// a command that follows its VMs.
func (l *eventLog) nodeHooks(changed chan<- struct{}) *node.Hooks {
	return &node.Hooks{
		State: func(vm supervise.VM) {
			ev := event{Event: "state", VM: vm.Name, State: vm.State.String(), Pid: vm.Pid, Addr: vm.Addr, Peer: vm.Peer,
				CertSHA256: vm.CertSHA256, CertSPKI: vm.CertSPKI, Error: errText(vm.Err)}
			if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
				ev.Attempt, ev.DelayMS = vm.Attempt, ms(vm.Delay)
			}
			l.write(ev)
			if changed != nil {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		},
		Reload: func(r node.Report) {
			var failed []string
			for _, p := range r.Failed {
				failed = append(failed, p.Entry)
			}
			l.write(event{Event: "reload", Added: r.Added, Changed: r.Changed, Unchanged: r.Unchanged, Removed: r.Removed, Failed: failed,
				KnownBad: r.KnownBad})
			if changed != nil {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		},
		RolloutStarted:  l.rollout("rollout_started"),
		RolloutHealthy:  l.rollout("rollout_healthy"),
		RolloutReverted: l.rollout("rollout_reverted"),
		RolloutFailed:   l.rollout("rollout_failed"),
		EngineListening: func(addr, certSHA256 string) {
			l.write(event{Event: "engine_listening", Addr: addr, CertSHA256: certSHA256})
		},
		Serving: func() {
			l.write(event{Event: "serving"})
			if changed != nil {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		},
	}
}

// rollout returns the hook that writes a rollout's event of the name
// event: its phase, the two versions, how long it took and why it failed.
func (l *eventLog) rollout(name string) func(supervise.RolloutEvent) {
	return func(ev supervise.RolloutEvent) {
		r := ev.Rollout
		e := event{Event: name, VM: ev.VM, ID: r.ID, Phase: r.Phase.String(), Strategy: r.Strategy.String(), From: r.From, To: r.To,
			Error: errText(r.Err)}
		if !r.Ended.IsZero() {
			e.ElapsedMS = ms(r.Ended.Sub(r.Started))
		}
		l.write(e)
	}
}
