package admin

import (
	"log/slog"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/vmretest"
)

// TestLogsNeverBlock: records of a VM pass through the tap whatever its
// followers do; a follower that reads nothing holds nothing, and once it
// reads again it is told how many records it missed and gets the newest
// the backlog keeps, the last one included; the backlog stays within its
// bytes.
func TestLogsNeverBlock(t *testing.T) {
	const limit, records = 16 << 10, 10000
	l := NewLogs(limit)
	_, slow := l.tail("vm", time.Time{}, -1, true)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range records {
		log.Info("line", "n", i) // returns at once: the follower is never waited for
	}
	if b := l.Bytes()["vm"]; b > limit || b < limit/2 {
		t.Errorf("backlog of %d bytes; want it near and under %d", b, limit)
	}
	backlog, _ := l.tail("vm", time.Time{}, -1, false)
	got, dropped := l.follow("vm", slow)
	if int(dropped) != records-len(backlog) {
		t.Errorf("the follower is told of %d records missed; want %d, all but the %d kept", dropped, records-len(backlog), len(backlog))
	}
	if len(got) == 0 || n(got[0]) != records-len(backlog) {
		t.Fatalf("the follower goes on with %d records from %d; want the oldest kept, %d", len(got), n(got[0]), records-len(backlog))
	}
	last := got[len(got)-1]
	for {
		more, d := l.follow("vm", slow)
		if len(more) == 0 {
			break
		}
		if d != 0 {
			t.Fatalf("a later batch says %d were missed", d)
		}
		last = more[len(more)-1]
	}
	if n(last) != records-1 || last.pid != 42 || last.stream != "stderr" {
		t.Errorf("the follower's last record: n=%d %+v; want the last one logged, %d", n(last), last, records-1)
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

// n is the "n" attribute of a record of these tests.
func n(e entry) int {
	v := -1
	e.rec.Attrs(func(a slog.Attr) bool { v = int(a.Value.Int64()); return false })
	return v
}

// TestDroppedBeforeMarksTheGap: a follower gets every record in order
// while it keeps up; when it falls behind the backlog, the count of the
// records it missed comes with the first record after them, once, and it
// goes on without a gap to the last record logged.
func TestDroppedBeforeMarksTheGap(t *testing.T) {
	l := NewLogs(8 << 10)
	_, f := l.tail("vm", time.Time{}, -1, true)
	defer l.unfollow("vm", f)
	log := slog.New(l.Handler(vmretest.EnabledDiscard{})).With("vm", "vm", "pid", 42).With("stream", "stderr")
	for i := range 10 {
		log.Info("line", "n", i)
	}
	got, dropped := l.follow("vm", f)
	if len(got) != 10 || dropped != 0 || n(got[0]) != 0 || n(got[9]) != 9 {
		t.Fatalf("a follower that keeps up: %d records from %d, %d missed; want 0 to 9, none missed", len(got), n(got[0]), dropped)
	}
	select {
	case <-f.wake:
	default:
		t.Fatal("records came and the follower was not woken")
	}
	for i := 10; i < 5000; i++ {
		log.Info("line", "n", i)
	}
	got, dropped = l.follow("vm", f)
	if int(dropped) != n(got[0])-10 || dropped == 0 {
		t.Errorf("after the gap: %d missed, then record %d; want the records from 10 to it missed", dropped, n(got[0]))
	}
	next := n(got[len(got)-1]) + 1
	for {
		more, d := l.follow("vm", f)
		if len(more) == 0 {
			break
		}
		if d != 0 || n(more[0]) != next {
			t.Fatalf("a later batch: %d missed, from record %d; want none missed, from %d", d, n(more[0]), next)
		}
		next = n(more[len(more)-1]) + 1
	}
	if next != 5000 {
		t.Errorf("the follower stopped before record %d; want all up to 4999", next)
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
