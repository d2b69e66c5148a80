package admin

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unsafe"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/safetext"
)

// DefaultBacklogBytes is how much of each VM's recent log records Logs
// keeps: a few thousand lines of a usual size.
const DefaultBacklogBytes = 256 << 10

// NodeStream is the stream of a record of the node about a VM in the VM's
// backlog (LogRecord.stream), beside stdout and stderr.
const NodeStream = "vmre"

// followerBatch is how many records a TailLogs follower takes from the
// backlog at a time.
const followerBatch = 256

// Logs keeps a bounded backlog of each VM's log records, and hands new
// ones to TailLogs followers. Its Handler is a slog.Handler to put in the
// host's chain: records of a VM's output (those with the launcher's vm and
// stream attributes) are kept as well as passed on.
//
// A follower reads the backlog itself, from the record after the last it
// sent: the VM's output never waits for a follower, and a follower holds
// no copy of its own. One that fell so far behind that the backlog dropped
// records it had not sent is told how many (dropped_before), and goes on
// with the oldest record kept, as soon as it reads again: the last record
// of a burst reaches it without waiting for the VM's next line.
type Logs struct {
	maxBytes int

	mu  sync.Mutex
	vms map[string]*backlog
}

// NewLogs returns a Logs that keeps maxBytes of each VM's records
// (DefaultBacklogBytes when 0 or less), counted as their text and the
// memory of the record that holds it.
func NewLogs(maxBytes int) *Logs {
	if maxBytes <= 0 {
		maxBytes = DefaultBacklogBytes
	}
	return &Logs{maxBytes: maxBytes, vms: make(map[string]*backlog)}
}

// backlog is one VM's records, oldest first, and its followers.
type backlog struct {
	records   []entry // records[start:] are kept; those before were dropped
	start     int
	bytes     int
	next      uint64 // the seq of the next record added
	followers map[*follower]struct{}
}

// kept returns the records the backlog holds, oldest first.
func (b *backlog) kept() []entry { return b.records[b.start:] }

// entry is one kept record.
type entry struct {
	rec    slog.Record // cloned: it owns its attributes
	stream string
	pid    int
	size   int
	seq    uint64 // its place among all the VM's records
}

// follower is one TailLogs stream that follows a VM.
type follower struct {
	wake chan struct{} // holds a token once records were added since it last read
	next uint64        // the seq of the next record it sends; guarded by Logs.mu
}

// firstSeq is the seq of the oldest record the backlog keeps, or next
// when it keeps none.
func (b *backlog) firstSeq() uint64 {
	if kept := b.kept(); len(kept) > 0 {
		return kept[0].seq
	}
	return b.next
}

// Handler wraps next: every record passes on to next, and a record of a
// VM's output is also kept.
func (l *Logs) Handler(next slog.Handler) slog.Handler { return &tap{logs: l, next: next} }

// tap is Logs's handler, bound to the attributes the launcher gives each
// stream's logger: vm, pid and stream.
type tap struct {
	logs   *Logs
	next   slog.Handler
	vm     string
	pid    int
	stream string
	group  bool // a group was opened: attributes are no longer the launcher's
}

func (t *tap) Enabled(ctx context.Context, level slog.Level) bool { return t.next.Enabled(ctx, level) }

func (t *tap) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case t.stream != "" && t.vm != "":
		t.logs.add(t.vm, entry{rec: r.Clone(), stream: t.stream, pid: t.pid})
	case t.stream == "" && !t.group:
		// A record of the node about a VM (the supervisor's, the
		// launcher's): kept in that VM's backlog too, as journalctl -u
		// shows the service manager's lines among the unit's own.
		if vm, pid := t.vm, t.pid; vm != "" || r.NumAttrs() > 0 {
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "vm":
					vm = a.Value.String()
				case "pid":
					pid = int(a.Value.Int64())
				}
				return true
			})
			if vm != "" {
				t.logs.add(vm, entry{rec: r.Clone(), stream: NodeStream, pid: pid})
			}
		}
	}
	return t.next.Handle(ctx, r)
}

func (t *tap) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *t
	c.next = t.next.WithAttrs(attrs)
	if !t.group {
		for _, a := range attrs {
			switch a.Key {
			case "vm":
				c.vm = a.Value.String()
			case "pid":
				c.pid = int(a.Value.Int64())
			case "stream":
				c.stream = a.Value.String()
			}
		}
	}
	return &c
}

func (t *tap) WithGroup(name string) slog.Handler {
	c := *t
	c.next, c.group = t.next.WithGroup(name), true
	return &c
}

// entryOverhead is what a kept record costs beyond its text: the record
// itself with its inline attributes, and the entry around it.
var entryOverhead = int(unsafe.Sizeof(entry{}))

// add keeps e in the VM's backlog, dropping the oldest records past the
// limit, and hands it to the VM's followers without waiting for them.
func (l *Logs) add(vm string, e entry) {
	e.size = len(e.rec.Message) + entryOverhead
	e.rec.Attrs(func(a slog.Attr) bool {
		e.size += len(a.Key) + len(a.Value.String())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.backlog(vm)
	e.seq = b.next
	b.next++
	b.records = append(b.records, e)
	b.bytes += e.size
	for b.bytes > l.maxBytes && b.start < len(b.records)-1 {
		b.bytes -= b.records[b.start].size
		b.records[b.start] = entry{} // its text goes with it
		b.start++
	}
	if b.start > len(b.records)/2 {
		// Move the kept records to the front once the dropped ones are the
		// larger part, so that the slice's array does not grow with every
		// record ever logged: each record moves about once, rather than
		// the whole backlog at every record.
		n := copy(b.records, b.kept())
		clear(b.records[n:])
		b.records, b.start = b.records[:n], 0
	}
	for f := range b.followers {
		select {
		case f.wake <- struct{}{}:
		default: // woken already
		}
	}
}

// backlog returns the VM's backlog, made on first use. It runs under mu.
func (l *Logs) backlog(vm string) *backlog {
	b := l.vms[vm]
	if b == nil {
		b = &backlog{followers: make(map[*follower]struct{})}
		l.vms[vm] = b
	}
	return b
}

// Bytes reports how much of each VM's backlog Logs holds, by its count.
func (l *Logs) Bytes() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.vms))
	for vm, b := range l.vms {
		out[vm] = b.bytes
	}
	return out
}

// tail returns the VM's kept records since the time since (all when it is
// zero), the last n of them when n is not negative, and, when follow is
// set, a follower registered in the same step, so that no record falls
// between the two.
func (l *Logs) tail(vm string, since time.Time, n int, follow bool) ([]entry, *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.backlog(vm)
	var out []entry
	for _, e := range b.kept() {
		if since.IsZero() || !e.rec.Time.Before(since) {
			out = append(out, e)
		}
	}
	if n >= 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	var f *follower
	if follow {
		f = &follower{wake: make(chan struct{}, 1), next: b.next}
		b.followers[f] = struct{}{}
	}
	return slices.Clip(out), f
}

// follow returns the records of the VM that f has not sent yet, oldest
// first and up to followerBatch of them, and how many of those it should
// have sent first the backlog no longer keeps; it moves f past them.
func (l *Logs) follow(vm string, f *follower) (records []entry, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.backlog(vm)
	if first := b.firstSeq(); f.next < first {
		dropped, f.next = first-f.next, first
	}
	kept := b.kept()
	i := len(kept) - int(b.next-f.next) // the index of f.next among the kept
	records = slices.Clone(kept[i:min(len(kept), i+followerBatch)])
	f.next += uint64(len(records))
	return records, dropped
}

func (l *Logs) unfollow(vm string, f *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.vms[vm]; b != nil {
		delete(b.followers, f)
	}
}

// proto is the record as the admin API sends it. A VM's output may hold
// any bytes, and protobuf strings must be valid UTF-8: bytes that are not
// are escaped as the node's log escapes them (x\xff), so that the record
// and those after it reach the client.
func (e entry) proto() *adminv1.LogRecord {
	p := &adminv1.LogRecord{
		Time:    timestamppb.New(e.rec.Time),
		Level:   e.rec.Level.String(),
		Message: safetext.Valid(e.rec.Message),
		Stream:  e.stream,
		Pid:     int32(e.pid),
	}
	e.rec.Attrs(func(a slog.Attr) bool {
		if e.stream == NodeStream && (a.Key == "vm" || a.Key == "pid") {
			return true // the VM tailed, and the record's pid
		}
		p.Attrs = append(p.Attrs, &adminv1.LogAttr{Key: safetext.Valid(a.Key), Value: safetext.Valid(a.Value.Resolve().String())})
		return true
	})
	return p
}

func (h handler) TailLogs(ctx context.Context, req *connect.Request[adminv1.TailLogsRequest], stream *connect.ServerStream[adminv1.TailLogsResponse]) error {
	s := h.s
	vm, err := s.lookup(req.Msg.GetName())
	if err != nil {
		return err
	}
	if s.logs == nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("this node keeps no log backlog"))
	}
	var since time.Time
	if d := req.Msg.GetSince(); d != nil {
		since = time.Now().Add(-d.AsDuration())
	}
	if t := req.Msg.GetSinceTime(); t != nil && t.AsTime().After(since) {
		since = t.AsTime()
	}
	n := -1
	if req.Msg.Tail != nil {
		n = int(req.Msg.GetTail())
	}
	backlog, f := s.logs.tail(vm.Name, since, n, req.Msg.GetFollow())
	if f != nil {
		defer s.logs.unfollow(vm.Name, f)
	}
	for _, e := range backlog {
		if err := stream.Send(&adminv1.TailLogsResponse{Record: e.proto()}); err != nil {
			return err
		}
	}
	if f == nil {
		return nil
	}
	// send sends what the follower has not seen yet, up to the backlog's end.
	send := func() error {
		for {
			records, dropped := s.logs.follow(vm.Name, f)
			for _, e := range records {
				if err := stream.Send(&adminv1.TailLogsResponse{Record: e.proto(), DroppedBefore: int64(dropped)}); err != nil {
					return err
				}
				dropped = 0
			}
			if len(records) < followerBatch {
				return nil // none left for now
			}
		}
	}
	for {
		if err := send(); err != nil {
			return err
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil
		case <-s.closing:
			// The node stops, its VMs stopped: their last records, then
			// the stream's clean end tells the follower.
			return send()
		}
	}
}
