package vmretest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmre/vmre/launcher"
)

// WaitTimeout bounds every wait of these helpers. It is far longer than
// anything takes on a loaded machine: it only turns a hang into a failure.
const WaitTimeout = 30 * time.Second

// Kinds of events, named after the fields of launcher.Hooks.
const (
	Started       = "Started"
	EngineCall    = "EngineCall"
	Handshake     = "Handshake"
	Ready         = "Ready"
	LaunchFailed  = "LaunchFailed"
	StopStage     = "StopStage"
	Exited        = "Exited"
	OutputDropped = "OutputDropped"
)

// Event is one call of a launcher hook: Kind names the hook, Info is its
// argument (a launcher.StartedInfo, ..., a *launcher.LaunchError).
type Event struct {
	Kind string
	Info any
}

// Events records the events of launches, in the order their hooks were
// called, and lets a test wait for them.
type Events struct {
	mu     sync.Mutex
	list   []Event
	change chan struct{} // closed by the next event
}

// NewEvents returns an empty recorder.
func NewEvents() *Events { return &Events{change: make(chan struct{})} }

func (e *Events) add(kind string, info any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, Event{kind, info})
	close(e.change)
	e.change = make(chan struct{})
}

// Hooks returns hooks that record every event.
func (e *Events) Hooks() *launcher.Hooks {
	return &launcher.Hooks{
		Started:       func(i launcher.StartedInfo) { e.add(Started, i) },
		EngineCall:    func(i launcher.EngineCallInfo) { e.add(EngineCall, i) },
		Handshake:     func(i launcher.HandshakeInfo) { e.add(Handshake, i) },
		Ready:         func(i launcher.ReadyInfo) { e.add(Ready, i) },
		LaunchFailed:  func(err *launcher.LaunchError) { e.add(LaunchFailed, err) },
		StopStage:     func(i launcher.StopStageInfo) { e.add(StopStage, i) },
		Exited:        func(i launcher.ExitInfo) { e.add(Exited, i) },
		OutputDropped: func(i launcher.OutputDropInfo) { e.add(OutputDropped, i) },
	}
}

// List returns the events so far, oldest first.
func (e *Events) List() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

// Kinds returns the kinds of the events so far, in order.
func (e *Events) Kinds() []string {
	var kinds []string
	for _, ev := range e.List() {
		kinds = append(kinds, ev.Kind)
	}
	return kinds
}

// Wait returns the first event of kind that satisfies match (any event of
// kind when match is nil), waiting for it up to WaitTimeout.
func (e *Events) Wait(t testing.TB, kind string, match func(Event) bool) Event {
	t.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	for seen := 0; ; {
		e.mu.Lock()
		list, change := e.list, e.change
		e.mu.Unlock()
		for ; seen < len(list); seen++ {
			if ev := list[seen]; ev.Kind == kind && (match == nil || match(ev)) {
				return ev
			}
		}
		select {
		case <-change:
		case <-timeout.C:
			t.Fatalf("no %s event within %s; events: %v", kind, WaitTimeout, e.Kinds())
			return Event{}
		}
	}
}
