package vmretest

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Logger returns a logger that writes text records to the test's log, at
// every level.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug - 8}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Record is a record a Recorder kept: its attributes, those of the
// logger's With included, by key.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]any
}

// Recorder is a slog.Handler, enabled at every level, that keeps every
// record. It is for tests of log output: a test learns what happened from
// events, not from log text.
type Recorder struct {
	attrs []slog.Attr
	*records
}

type records struct {
	mu   sync.Mutex
	list []Record
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{records: new(records)} }

func (h *Recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *Recorder) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.Resolve().Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve().Any()
		return true
	})
	h.mu.Lock()
	h.list = append(h.list, rec)
	h.mu.Unlock()
	return nil
}

func (h *Recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Recorder{attrs: append(slices.Clip(h.attrs), attrs...), records: h.records}
}

func (h *Recorder) WithGroup(string) slog.Handler { return h }

// Records returns the records kept so far, oldest first.
func (h *Recorder) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.list)
}

// Find returns the first record whose message is msg.
func (h *Recorder) Find(msg string) (Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.list {
		if r.Message == msg {
			return r, true
		}
	}
	return Record{}, false
}

// SyncBuffer is a bytes.Buffer that is safe for concurrent use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// EnabledDiscard is a slog.Handler that is enabled at every level, so that
// every record is built, and drops the records.
type EnabledDiscard struct{}

func (EnabledDiscard) Enabled(context.Context, slog.Level) bool  { return true }
func (EnabledDiscard) Handle(context.Context, slog.Record) error { return nil }
func (h EnabledDiscard) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h EnabledDiscard) WithGroup(string) slog.Handler           { return h }
