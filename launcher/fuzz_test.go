package launcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// FuzzLogPipe runs arbitrary output, cut into arbitrary reads, through a
// logPipe. It must never panic nor emit a record longer than MaxLineBytes,
// and each line (each capped line) must make exactly one record, with the
// line's own text when it is not JSON, and one raw copy.
func FuzzLogPipe(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint16(0), uint16(0), false)
	f.Add([]byte("no newline at the end"), uint16(0), uint16(3), false)
	f.Add([]byte("crlf\r\nline\r\r\n\n\n"), uint16(2), uint16(1), true)
	f.Add([]byte("panic: boom\n\ngoroutine 1 [running]:\n"), uint16(0), uint16(7), false)
	f.Add([]byte(`{"level":"warn","msg":"json"}`+"\nplain\n"), uint16(1), uint16(0), false)
	f.Add([]byte(`{"level":"info","msg":"a"} trailing`+"\n"), uint16(0), uint16(5), false) // logged whole, as two records on one line (testdata)
	f.Add([]byte("0123456789abcdef"), uint16(4095), uint16(0), false)                      // one 64 KiB line, exactly the cap, no newline
	f.Add([]byte("0123456789abcdef"), uint16(4096), uint16(1000), true)                    // just over the cap
	f.Add([]byte("0123456789abcde\n"), uint16(8000), uint16(65535), false)                 // many short lines
	f.Add([]byte("\r"), uint16(65535), uint16(0), false)                                   // a line of carriage returns
	f.Fuzz(func(t *testing.T, chunk []byte, repeat uint16, readSize uint16, failAtEnd bool) {
		if len(chunk) == 0 {
			return
		}
		const maxInput = 1 << 20
		n := min(1+int(repeat), maxInput/len(chunk))
		input := bytes.Repeat(chunk, max(n, 1))

		var raw bytes.Buffer
		h := &pipeCapture{}
		p := &logPipe{log: slog.New(h), raw: &raw, tail: &tail{}}
		var r io.Reader = &chunkReader{data: input, size: 1 + int(readSize)}
		if failAtEnd {
			r = io.MultiReader(r, errReader{})
		}
		p.run(r)

		want := splitLines(input)
		if len(h.records) != len(want) {
			t.Fatalf("%d records for %d lines", len(h.records), len(want))
		}
		var wantRaw bytes.Buffer
		for i, line := range want {
			got := h.records[i]
			if len(got.msg) > MaxLineBytes {
				t.Fatalf("record %d has %d bytes, over the cap of %d", i, len(got.msg), MaxLineBytes)
			}
			if got.truncated != line.truncated {
				t.Fatalf("record %d: truncated %v, want %v", i, got.truncated, line.truncated)
			}
			// A line is taken apart only when it is one whole JSON record
			// (and starts with '{'); any other line is logged whole.
			want := line.text
			if !line.truncated && strings.HasPrefix(line.text, "{") {
				if rec, ok := parseJSONLine([]byte(line.text)); ok {
					want = rec.msg
				}
			}
			if got.msg != want {
				t.Fatalf("record %d = %.80q; want %.80q", i, got.msg, want)
			}
			wantRaw.WriteString(line.text)
			wantRaw.WriteByte('\n')
		}
		if !bytes.Equal(raw.Bytes(), wantRaw.Bytes()) {
			t.Fatalf("raw copy of %d bytes; want %d", raw.Len(), wantRaw.Len())
		}
		lines := p.tail.lines()
		if len(lines) > tailLines {
			t.Fatalf("tail keeps %d lines; want at most %d", len(lines), tailLines)
		}
		for _, l := range lines {
			if len(l) > tailLineBytes {
				t.Fatalf("tail keeps a line of %d bytes; want at most %d", len(l), tailLineBytes)
			}
		}
	})
}

// pipeLine is a line as logPipe must see it.
type pipeLine struct {
	text      string
	truncated bool
}

// splitLines is the model of logPipe's line splitting: lines end at '\n'
// or at the end of the input, end-of-line "\r" and "\n" are trimmed, and a
// line of MaxLineBytes bytes or more keeps its first MaxLineBytes.
func splitLines(input []byte) []pipeLine {
	var lines []pipeLine
	for len(input) > 0 {
		i := bytes.IndexByte(input, '\n')
		var line []byte
		if i < 0 {
			line, input = input, nil
		} else {
			line, input = input[:i], input[i+1:]
		}
		truncated := len(line) >= MaxLineBytes
		if truncated {
			line = line[:MaxLineBytes]
		}
		lines = append(lines, pipeLine{string(bytes.TrimRight(line, "\r\n")), truncated})
	}
	return lines
}

// chunkReader returns data in reads of at most size bytes.
type chunkReader struct {
	data []byte
	size int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.size)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// errReader fails as a pipe whose read deadline passed.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read deadline exceeded") }

// pipeCapture is a slog.Handler that keeps each record's message and
// whether it was truncated.
type pipeCapture struct {
	mu      sync.Mutex
	records []capturedRecord
}

type capturedRecord struct {
	level     slog.Level
	msg       string
	truncated bool
}

func (h *pipeCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *pipeCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *pipeCapture) WithGroup(string) slog.Handler            { return h }

func (h *pipeCapture) Handle(_ context.Context, r slog.Record) error {
	rec := capturedRecord{level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "truncated" {
			rec.truncated = a.Value.Bool()
		}
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

// TestSplitLinesModel pins the model FuzzLogPipe checks logPipe against.
func TestSplitLinesModel(t *testing.T) {
	long := strings.Repeat("x", MaxLineBytes)
	for _, tc := range []struct {
		in   string
		want []pipeLine
	}{
		{"a\nb", []pipeLine{{"a", false}, {"b", false}}},
		{"a\r\n\n", []pipeLine{{"a", false}, {"", false}}},
		{long[:MaxLineBytes-1] + "\n", []pipeLine{{long[:MaxLineBytes-1], false}}},
		{long + "\nnext\n", []pipeLine{{long, true}, {"next", false}}},
		{long + "yyy", []pipeLine{{long, true}}},
	} {
		if got := splitLines([]byte(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("splitLines(%.20q...) = %d lines; want %d", tc.in, len(got), len(tc.want))
		}
	}
}

// TestCrashIsAnError: a Go crash's report, from its first line to the end of
// the output, is logged at ERROR; the lines before it keep their level.
func TestCrashIsAnError(t *testing.T) {
	for _, header := range []string{"panic: boom", "fatal error: all goroutines are asleep - deadlock!",
		"SIGSEGV: segmentation violation", "SIGQUIT: quit"} {
		h := &pipeCapture{}
		p := &logPipe{log: slog.New(h), raw: io.Discard}
		p.run(strings.NewReader("starting\nSIGNAL: not a crash\n" + header + "\nPC=0x46e1a1 m=0 sigcode=0\n\ngoroutine 1 [running]:\n"))
		want := []slog.Level{slog.LevelInfo, slog.LevelInfo, slog.LevelError, slog.LevelError, slog.LevelError, slog.LevelError}
		if len(h.records) != len(want) {
			t.Fatalf("%q: %d records, want %d", header, len(h.records), len(want))
		}
		for i, r := range h.records {
			if r.level != want[i] {
				t.Errorf("%q: record %d (%q) at %v, want %v", header, i, r.msg, r.level, want[i])
			}
		}
	}
}
