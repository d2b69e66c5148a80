package admin

import (
	"log/slog"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestLogsNeverBlock: records of a VM pass through the tap whatever its
// followers do; a follower that reads nothing misses the records past its
// buffer, and counts them; the backlog stays within its bytes.
func TestLogsNeverBlock(t *testing.T) {
	const limit, records = 16 << 10, 10000
	l := NewLogs(limit)
	_, slow := l.tail("vm", time.Time{}, -1, true)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range records {
		log.Info("line", "n", i) // returns at once: the follower is never waited for
	}
	if got := len(slow.records); got != followerBuffer {
		t.Errorf("the follower holds %d records; want its buffer, %d", got, followerBuffer)
	}
	l.mu.Lock()
	missed := slow.missed
	l.mu.Unlock()
	if missed != records-followerBuffer {
		t.Errorf("the follower missed %d records; want %d", missed, records-followerBuffer)
	}
	if b := l.Bytes()["vm"]; b > limit || b < limit/2 {
		t.Errorf("backlog of %d bytes; want it near and under %d", b, limit)
	}
	backlog, _ := l.tail("vm", time.Time{}, -1, false)
	if first, last := backlog[0].rec.Message, backlog[len(backlog)-1]; first != "line" || last.pid != 42 || last.stream != "stderr" {
		t.Errorf("backlog ends with %+v", last)
	}
	l.unfollow("vm", slow)
	// A record of the node about a VM (no stream) goes into that VM's
	// backlog, marked as the node's; one about no VM goes nowhere.
	host := slog.New(l.Handler(vmretest.EnabledDiscard{}))
	host.Info("plugin directory loaded", "added", []string{"other"})
	host.With("component", "supervisor").Warn("waiting to restart", "vm", "other", "state", "backoff")
	host.Info("vm exited", "vm", "other", "pid", 7, "exit", "exit code 1")
	kept, _ := l.tail("other", time.Time{}, -1, false)
	if len(kept) != 2 || kept[0].stream != NodeStream || kept[1].pid != 7 || kept[1].rec.Message != "vm exited" {
		t.Errorf("the node's records about other: %+v; want its two, marked %s", kept, NodeStream)
	}
	if p := kept[1].proto(); len(p.GetAttrs()) != 1 || p.GetAttrs()[0].GetKey() != "exit" || p.GetPid() != 7 {
		t.Errorf("a node record as sent: %v; want its pid as the record's and no vm attribute", p)
	}
	if len(l.Bytes()) != 2 {
		t.Errorf("backlogs %v; want vm's and other's only", l.Bytes())
	}
}

// TestTailLast: n keeps the last records of the backlog, after since.
func TestTailLast(t *testing.T) {
	l := NewLogs(0)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 1, "stream", "stdout")
	for i := range 20 {
		log.Info("line", "n", i)
	}
	for _, c := range []struct{ n, want int }{{-1, 20}, {0, 0}, {5, 5}, {25, 20}} {
		got, _ := l.tail("vm", time.Time{}, c.n, false)
		if len(got) != c.want {
			t.Errorf("tail %d: %d records; want %d", c.n, len(got), c.want)
		}
		if c.want > 0 && got[len(got)-1].rec.Message != "line" {
			t.Errorf("tail %d ends with %v", c.n, got[len(got)-1].rec)
		}
	}
	if got, _ := l.tail("vm", time.Now().Add(time.Hour), 5, false); len(got) != 0 {
		t.Errorf("tail since a later time: %d records; want none", len(got))
	}
}

// TestDroppedBeforeMarksTheGap: the count of missed records comes with the
// first record after them, not with the records the follower had in its
// buffer before them.
func TestDroppedBeforeMarksTheGap(t *testing.T) {
	const missed = 10
	l := NewLogs(0)
	_, f := l.tail("vm", time.Time{}, -1, true)
	defer l.unfollow("vm", f)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range followerBuffer + missed {
		log.Info("line", "n", i)
	}
	for i := range followerBuffer { // what it holds came before the gap
		if e := <-f.records; e.dropped != 0 {
			t.Fatalf("record %d of the buffer says %d were missed before it", i, e.dropped)
		}
	}
	log.Info("after the gap")
	if e := <-f.records; e.rec.Message != "after the gap" || e.dropped != missed {
		t.Errorf("the record after the gap: %q, %d missed before it; want %d", e.rec.Message, e.dropped, missed)
	}
}

// TestBacklogKeepsTheNewest: past its limit the backlog holds the newest
// records, in order and without a gap, and its array stays within a small
// multiple of what it holds rather than growing with every record.
func TestBacklogKeepsTheNewest(t *testing.T) {
	const records = 10000
	l := NewLogs(16 << 10)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range records {
		log.Info("line", "n", i)
		backlog, _ := l.tail("vm", time.Time{}, -1, false)
		next := i + 1 - len(backlog)
		for _, e := range backlog {
			var n int64 = -1
			e.rec.Attrs(func(a slog.Attr) bool { n = a.Value.Int64(); return false })
			if n != int64(next) {
				t.Fatalf("after record %d: the backlog holds record %d where %d was due", i, n, next)
			}
			next++
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.vms["vm"]
	if kept := len(b.kept()); kept < 10 || cap(b.records) > 4*kept {
		t.Errorf("the backlog keeps %d records in an array of %d", kept, cap(b.records))
	}
}

// BenchmarkTap is the cost the backlog adds to each line of a VM's output
// once the backlog is full (the steady state of a VM that logs): the record
// is kept, the oldest one dropped.
func BenchmarkTap(b *testing.B) {
	l := NewLogs(0)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range 100000 { // fill the backlog
		log.Info("flood", "n", i, "pad", "0123456789abcdef0123456789abcdef0123456789abcdef")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		log.Info("flood", "n", i, "pad", "0123456789abcdef0123456789abcdef0123456789abcdef")
	}
}
