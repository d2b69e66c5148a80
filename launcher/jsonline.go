package launcher

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// jsonRecord is a structured log line of a VM.
type jsonRecord struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// Keys of the level, message and time in the JSON styles of slog, zap and
// hclog. The VM's time is dropped: the host stamps its own.
var (
	levelKeys = []string{"level", "@level", "lvl", "severity"}
	msgKeys   = []string{"msg", "@message", "message"}
	timeKeys  = []string{"time", "ts", "@timestamp", "timestamp"}
)

// parseJSONLine reads a JSON object that has a level and a message. Other
// fields become attributes, in their order.
func parseJSONLine(line []byte) (jsonRecord, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return jsonRecord{}, false
	}
	var rec jsonRecord
	haveLevel, haveMsg := false, false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonRecord{}, false
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return jsonRecord{}, false
		}
		switch {
		case !haveLevel && slices.Contains(levelKeys, key):
			s, ok := v.(string)
			if !ok {
				return jsonRecord{}, false
			}
			rec.level, haveLevel = parseLevel(s), true
		case !haveMsg && slices.Contains(msgKeys, key):
			s, ok := v.(string)
			if !ok {
				return jsonRecord{}, false
			}
			rec.msg, haveMsg = s, true
		case slices.Contains(timeKeys, key):
		default:
			rec.attrs = append(rec.attrs, slog.Any(key, v))
		}
	}
	if _, err := dec.Token(); err != nil || !haveLevel || !haveMsg {
		return jsonRecord{}, false
	}
	// The object must be the whole line: anything after it would be lost.
	if _, err := dec.Token(); err != io.EOF {
		return jsonRecord{}, false
	}
	return rec, true
}

// parseLevel maps the level names of slog ("WARN", "ERROR+2"), zap
// ("dpanic", "fatal") and hclog ("trace", "warning") to slog levels.
func parseLevel(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) == nil {
		return l
	}
	switch strings.ToLower(s) {
	case "trace":
		return slog.LevelDebug - 4
	case "warning":
		return slog.LevelWarn
	case "dpanic", "panic", "fatal", "critical", "crit":
		return slog.LevelError
	}
	return slog.LevelInfo
}
