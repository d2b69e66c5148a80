package launcher

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
)

// MaxLineBytes caps one line of a VM's output. The rest of a longer line is
// read and dropped, so a VM cannot make the host buffer without bound.
const MaxLineBytes = 64 << 10

// logPipe turns one stream of a VM's output into slog records.
type logPipe struct {
	log      *slog.Logger // carries vm, pid, stream
	raw      io.Writer    // optional copy of each line
	tail     *tail        // last lines, for error reports; nil for stdout
	panicked bool         // a "panic:" or "fatal error:" line was seen
}

// run reads r to its end. It owns no goroutine; its caller runs it in one.
func (p *logPipe) run(r io.Reader) {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			p.line(line, true)
			if _, err = skipLine(br); err != nil {
				return
			}
			continue
		}
		if len(line) > 0 {
			p.line(line, false)
		}
		if err != nil {
			return
		}
	}
}

// skipLine drops the rest of an overlong line.
func skipLine(br *bufio.Reader) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

func (p *logPipe) line(line []byte, truncated bool) {
	line = bytes.TrimRight(line, "\r\n")
	if p.raw != nil {
		p.raw.Write(append(line[:len(line):len(line)], '\n'))
	}
	if p.tail != nil {
		p.tail.add(line)
	}
	if len(line) > 0 && line[0] == '{' && !truncated {
		if rec, ok := parseJSONLine(line); ok {
			p.emit(rec.level, rec.msg, rec.attrs...)
			return
		}
	}
	level := slog.LevelInfo
	if bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: ")) {
		p.panicked = true
	}
	if p.panicked {
		level = slog.LevelError // the trace that follows a panic belongs to it
	}
	if truncated {
		p.emit(level, string(line), slog.Bool("truncated", true))
		return
	}
	p.emit(level, string(line))
}

func (p *logPipe) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return
	}
	p.log.LogAttrs(ctx, level, msg, attrs...)
}
