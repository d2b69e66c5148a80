package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Messages of the launcher and the engine that mark the moments of a
// launch. The launcher reports no such events otherwise: doctor reads them
// off its log records (see docs/DEBUGGING.md and the report of issue 4).
const (
	msgVMStarted          = "vm started"
	msgInitAccepted       = "initialize accepted"
	msgInitRejected       = "initialize rejected"
	msgLegacyInitAccepted = "legacy initialize accepted"
	msgLegacyInitRejected = "legacy initialize rejected"
)

// traceEvent is one launcher or engine record of interest.
type traceEvent struct {
	time  time.Time
	msg   string
	attrs map[string]slog.Value
}

func (ev *traceEvent) str(key string) string {
	if v, ok := ev.attrs[key]; ok {
		return v.String()
	}
	return ""
}

// rejected reports whether the event is an Initialize the engine refused.
func (ev *traceEvent) rejected() bool { return strings.HasSuffix(ev.msg, "rejected") }

// launchTrace is a slog.Handler that notes when the VM was started and when
// it called back, and passes every record on to next when next wants it.
type launchTrace struct {
	next   slog.Handler
	attrs  []slog.Attr // from WithAttrs
	events *traceEvents
}

type traceEvents struct {
	mu         sync.Mutex
	started    *traceEvent // msgVMStarted
	initialize *traceEvent // the first Initialize, accepted or not
}

func newLaunchTrace(next slog.Handler) *launchTrace {
	return &launchTrace{next: next, events: &traceEvents{}}
}

// Enabled is true at every level: the launcher logs "vm started" at debug.
func (h *launchTrace) Enabled(context.Context, slog.Level) bool { return true }

func (h *launchTrace) Handle(ctx context.Context, r slog.Record) error {
	h.note(r)
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *launchTrace) note(r slog.Record) {
	var slot **traceEvent
	switch r.Message {
	case msgVMStarted:
		slot = &h.events.started
	case msgInitAccepted, msgInitRejected, msgLegacyInitAccepted, msgLegacyInitRejected:
		slot = &h.events.initialize
	default:
		return
	}
	ev := &traceEvent{time: r.Time, msg: r.Message, attrs: make(map[string]slog.Value)}
	for _, a := range h.attrs {
		ev.attrs[a.Key] = a.Value.Resolve()
	}
	if _, fromVM := ev.attrs["stream"]; fromVM {
		return // a line of the VM's own output that happens to say the same
	}
	r.Attrs(func(a slog.Attr) bool {
		ev.attrs[a.Key] = a.Value.Resolve()
		return true
	})
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	if *slot == nil {
		*slot = ev
	}
}

func (h *launchTrace) WithAttrs(as []slog.Attr) slog.Handler {
	return &launchTrace{next: h.next.WithAttrs(as), attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...), events: h.events}
}

func (h *launchTrace) WithGroup(name string) slog.Handler {
	return &launchTrace{next: h.next.WithGroup(name), attrs: h.attrs, events: h.events}
}

// snapshot returns the events noted so far.
func (h *launchTrace) snapshot() (started, initialize *traceEvent) {
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	return h.events.started, h.events.initialize
}

// lineTail keeps the last lines written to it: the launcher writes the
// VM's stderr to it line by line.
type lineTail struct {
	mu    sync.Mutex
	lines []string
}

const (
	tailKeep      = 10
	tailLineBytes = 300
)

func (t *lineTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for line := range strings.Lines(string(p)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		if len(line) > tailLineBytes {
			line = line[:tailLineBytes] + "…"
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > tailKeep {
			t.lines = t.lines[1:]
		}
	}
	return len(p), nil
}

func (t *lineTail) get() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}
