package launcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// MaxLineBytes caps one line of a VM's output. The rest of a longer line is
// read and dropped, so a VM cannot make the host buffer without bound.
const MaxLineBytes = 64 << 10

// quietReadBytes is the read buffer of a quiet pipe. A pipe whose reads
// fill their buffer, or whose line does not fit, borrows a buffer of
// MaxLineBytes from busyBuffers until a read drains it again. A pipe of the
// VM's own (an *os.File) borrows even its quiet buffer from quietBuffers,
// only once there is something to read: the pipes of an idle VM hold no
// buffer on the host.
const quietReadBytes = 4 << 10

// busyBuffers and quietBuffers are the read buffers, shared by the pipes of
// all VMs.
var (
	busyBuffers  = sync.Pool{New: func() any { return new([MaxLineBytes]byte) }}
	quietBuffers = sync.Pool{New: func() any { return new([quietReadBytes]byte) }}
)

// logPipe turns one stream of a VM's output into slog records.
type logPipe struct {
	log    *slog.Logger // carries vm, pid, stream
	raw    io.Writer    // optional copy of each line
	tail   *tail        // last lines, for error reports; nil for stdout
	output *tail        // last lines of both streams, each after its mark
	mark   string       // "stdout: " or "stderr: "

	drop     func(truncated int, unread bool) // told of lost output; may be nil
	counts   *levelCounts                     // lines by level; may be nil
	panicked bool                             // a Go crash's first line was seen (crashHeader)

	handler slog.Handler // log's, called directly: see emit
	read    time.Time    // when the last read returned: the time of its lines' records
	rawLine []byte       // a line and its '\n', for raw
	json    jsonParser   // takes JSON lines apart; its slices are reused
}

// run reads r to its end. It owns no goroutine; its caller runs it in one.
func (p *logPipe) run(r io.Reader) {
	p.handler = p.log.Handler()
	raw := pipeConn(r)                                  // nil unless r is a pipe of the VM's own
	quiet := quietBuffers.Get().(*[quietReadBytes]byte) // or nil, while idle
	var busy *[MaxLineBytes]byte                        // borrowed from busyBuffers, or nil
	defer func() {
		if quiet != nil {
			quietBuffers.Put(quiet)
		}
		if busy != nil {
			busyBuffers.Put(busy)
		}
	}()
	buf := quiet[:]
	start, end := 0, 0 // buf[start:end] has been read and not yet logged
	skipping := false  // the rest of a capped line is dropped
	for {
		var n int
		var err error
		if raw != nil && end == 0 && busy == nil {
			// Nothing is kept between reads: wait without a buffer.
			n, err = readQuiet(raw, &quiet)
			buf = quiet[:]
		} else {
			n, err = r.Read(buf[end:])
		}
		filled := n == len(buf)-end // the pipe may hold more
		if n > 0 {
			p.read = time.Now()
		}
		end += n
		for {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			if !skipping {
				p.line(buf[start:start+i+1], false)
			}
			start, skipping = start+i+1, false
		}
		if skipping {
			start = end
		}
		if end-start == MaxLineBytes {
			p.line(buf[start:end], true)
			start, skipping = end, true
			if p.drop != nil {
				p.drop(1, false)
			}
		}
		if err != nil {
			if start < end {
				p.line(buf[start:end], false) // the last line has no '\n'
			}
			if p.drop != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				p.drop(0, true) // the drain time after the VM's exit ended
			}
			return
		}

		// Before the next read: keep the unlogged part of a line, in the
		// large buffer when the pipe is busy or the line does not fit in
		// the small one, else in the small one.
		rest := end - start
		switch {
		case busy == nil && (filled || rest == quietReadBytes):
			busy = busyBuffers.Get().(*[MaxLineBytes]byte)
			copy(busy[:], buf[start:end])
			buf = busy[:]
		case busy != nil && !filled && rest < quietReadBytes:
			if quiet == nil {
				quiet = quietBuffers.Get().(*[quietReadBytes]byte)
			}
			copy(quiet[:], buf[start:end])
			busyBuffers.Put(busy)
			busy, buf = nil, quiet[:]
			p.rawLine = nil // hold no more than the small buffer while idle
		default:
			copy(buf, buf[start:end])
		}
		start, end = 0, rest
	}
}

func (p *logPipe) line(line []byte, truncated bool) {
	for n := len(line); n > 0 && (line[n-1] == '\n' || line[n-1] == '\r'); n-- {
		line = line[:n-1]
	}
	if p.raw != nil {
		p.rawLine = append(append(p.rawLine[:0], line...), '\n')
		p.raw.Write(p.rawLine)
	}
	if p.tail != nil {
		p.tail.add(line)
	}
	if p.output != nil {
		p.output.addMarked(p.mark, line)
	}
	if len(line) > 0 && line[0] == '{' && !truncated && p.json.parse(line) {
		p.count(p.json.level)
		p.jsonLine(line)
		return
	}
	level := slog.LevelInfo
	if !p.panicked && crashHeader(line) {
		p.panicked = true
	}
	if p.panicked {
		level = slog.LevelError // the trace that follows a panic belongs to it
	}
	p.count(level)
	if !p.handler.Enabled(context.Background(), level) {
		return // before the line is copied into a string
	}
	if truncated {
		p.emit(level, string(line), slog.Bool("truncated", true))
		return
	}
	p.emit(level, string(line))
}

// count counts a line at level.
func (p *logPipe) count(level slog.Level) {
	if p.counts != nil {
		p.counts.add(level)
	}
}

// jsonLine logs a line that p.json has parsed. Its record's strings are
// slices of one copy of the line, made once the level is known to be
// enabled.
func (p *logPipe) jsonLine(line []byte) {
	if !p.handler.Enabled(context.Background(), p.json.level) {
		return
	}
	var buf [8]slog.Attr // on the stack: no write barriers, nothing held
	msg, attrs := p.json.record(string(line), buf[:0])
	p.emit(p.json.level, msg, attrs...)
}

// emit hands a record to the handler as slog.Logger.LogAttrs does, but
// stamped with the time its line was read and without the caller's program
// counter: the source of a VM's line is the VM, not this file, and
// runtime.Callers would cost more than all the rest of the line. Its
// caller has asked the handler whether level is enabled.
func (p *logPipe) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	r := slog.NewRecord(p.read, level, msg, 0)
	r.AddAttrs(attrs...)
	p.handler.Handle(context.Background(), r) // errors are dropped, as slog.Logger drops them
}

// crashHeader reports whether line opens a Go program's crash report: a
// panic, a fatal error, or a signal the runtime does not handle
// ("SIGSEGV: segmentation violation", "SIGQUIT: quit"). The lines that
// follow, the goroutine dump, belong to it.
func crashHeader(line []byte) bool {
	if bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: ")) {
		return true
	}
	if !bytes.HasPrefix(line, []byte("SIG")) {
		return false
	}
	name, _, ok := bytes.Cut(line, []byte(": "))
	if !ok {
		return false
	}
	for _, sig := range crashSignals {
		if string(name) == sig { // no copy: the compiler compares in place
			return true
		}
	}
	return false
}

// crashSignals are the signals on which the Go runtime crashes, printing
// the signal's name first.
var crashSignals = []string{"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGQUIT", "SIGABRT", "SIGTRAP", "SIGSYS", "SIGSTKFLT", "SIGEMT"}
