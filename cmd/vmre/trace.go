package main

import (
	"sync"
	"time"

	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/launcher"
)

// launchTrace keeps the events of one launch that doctor reports: the
// VM's start and its first Initialize, accepted or refused.
type launchTrace struct {
	mu      sync.Mutex
	started *launcher.StartedInfo
	at      time.Time // when the VM started
	call    *traceCall
}

// traceCall is the VM's first Initialize, and when it came.
type traceCall struct {
	launcher.EngineCallInfo
	sinceStart time.Duration // from the VM's start
}

func (tr *launchTrace) hooks() *launcher.Hooks {
	return &launcher.Hooks{
		Started: func(i launcher.StartedInfo) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			tr.started, tr.at = &i, time.Now()
		},
		EngineCall: func(i launcher.EngineCallInfo) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if tr.call == nil && i.Procedure != runtimev1connect.RuntimeServiceLeaseProcedure {
				tr.call = &traceCall{EngineCallInfo: i, sinceStart: time.Since(tr.at)}
			}
		},
	}
}

// get returns what the launch told so far.
func (tr *launchTrace) get() (*launcher.StartedInfo, *traceCall) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.started, tr.call
}
