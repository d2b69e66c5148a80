// Package loglines makes the VM output of the log-path benchmark: blocks of
// log lines that all have the same length, so that the benchmark knows how
// many bytes a VM writes without counting them, and the records the host
// should make of them, so that the benchmark can hand the same records to a
// handler without any VM.
package loglines

import (
	"fmt"
	"log/slog"
)

// Format is the style of the lines.
type Format string

const (
	// Plain lines are unstructured text, as a VM's fmt.Println writes them.
	Plain Format = "plain"
	// JSON lines are records of slog's JSONHandler.
	JSON Format = "json"
	// Zap lines are records of zap's production JSON encoder.
	Zap Format = "zap"
	// HCLog lines are records of hclog's JSON format (keys sorted, '@'
	// before the others).
	HCLog Format = "hclog"
)

// Formats are all the formats, plain first.
var Formats = []Format{Plain, JSON, Zap, HCLog}

// BlockLines is how many lines a block holds.
const BlockLines = 512

// Line is one line of a VM's output and the record the host makes of it.
type Line struct {
	Text  []byte // the line, ending in '\n'
	Level slog.Level
	Msg   string
	Attrs []slog.Attr
}

// Lines returns the BlockLines lines of a block of format f.
func Lines(f Format) []Line {
	lines := make([]Line, BlockLines)
	for i := range lines {
		// Fixed-width values: every line of a format has the same length.
		height, hash, txs := int64(10_000_000+i), fmt.Sprintf("0x%064x", i), int64(1000+i)
		l := Line{Level: slog.LevelInfo, Msg: "block accepted"}
		switch f {
		case JSON:
			l.Text = fmt.Appendf(nil, `{"time":"2025-01-02T03:04:05.%06dZ","level":"INFO","msg":"block accepted","height":%d,"hash":"%s","txs":%d}`+"\n", i, height, hash, txs)
			l.Attrs = []slog.Attr{slog.Int64("height", height), slog.String("hash", hash), slog.Int64("txs", txs)}
		case Zap:
			l.Text = fmt.Appendf(nil, `{"level":"info","ts":1735787045.%06d,"caller":"chain/accept.go:142","msg":"block accepted","height":%d,"hash":"%s","txs":%d}`+"\n", i, height, hash, txs)
			l.Attrs = []slog.Attr{slog.String("caller", "chain/accept.go:142"), slog.Int64("height", height), slog.String("hash", hash), slog.Int64("txs", txs)}
		case HCLog:
			l.Text = fmt.Appendf(nil, `{"@level":"info","@message":"block accepted","@module":"vm.chain","@timestamp":"2025-01-02T03:04:05.%06dZ","hash":"%s","height":%d,"txs":%d}`+"\n", i, hash, height, txs)
			l.Attrs = []slog.Attr{slog.String("@module", "vm.chain"), slog.String("hash", hash), slog.Int64("height", height), slog.Int64("txs", txs)}
		default:
			l.Text = fmt.Appendf(nil, "2025-01-02T03:04:05.%06dZ INFO block accepted height=%d hash=%s txs=%d\n", i, height, hash, txs)
			l.Msg = string(l.Text[:len(l.Text)-1])
		}
		lines[i] = l
	}
	return lines
}

// Block returns the lines of format f, one after the other.
func Block(f Format) []byte {
	var b []byte
	for _, l := range Lines(f) {
		b = append(b, l.Text...)
	}
	return b
}
