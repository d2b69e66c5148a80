package admin

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

type discard struct{}

func (discard) Enabled(context.Context, slog.Level) bool  { return true }
func (discard) Handle(context.Context, slog.Record) error { return nil }
func (d discard) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discard) WithGroup(string) slog.Handler           { return d }

// TestLogsNeverBlock: records of a VM pass through the tap whatever its
// followers do; a follower that reads nothing misses the records past its
// buffer, and counts them; the backlog stays within its bytes.
func TestLogsNeverBlock(t *testing.T) {
	const limit, records = 16 << 10, 10000
	l := NewLogs(limit)
	_, slow := l.tail("vm", time.Time{}, true)
	log := slog.New(l.Handler(discard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range records {
		log.Info("line", "n", i) // returns at once: the follower is never waited for
	}
	if got := len(slow.records); got != followerBuffer {
		t.Errorf("the follower holds %d records; want its buffer, %d", got, followerBuffer)
	}
	if got := slow.dropped.Load(); got != records-followerBuffer {
		t.Errorf("the follower missed %d records; want %d", got, records-followerBuffer)
	}
	if b := l.Bytes()["vm"]; b > limit || b < limit/2 {
		t.Errorf("backlog of %d bytes; want it near and under %d", b, limit)
	}
	backlog, _ := l.tail("vm", time.Time{}, false)
	if first, last := backlog[0].rec.Message, backlog[len(backlog)-1]; first != "line" || last.pid != 42 || last.stream != "stderr" {
		t.Errorf("backlog ends with %+v", last)
	}
	l.unfollow("vm", slow)
	// Records of the host itself (no stream) are not a VM's output.
	slog.New(l.Handler(discard{})).With("vm", "other").Info("vm exited")
	if _, ok := l.Bytes()["other"]; ok {
		t.Error("a host record went into a VM's backlog")
	}
}
