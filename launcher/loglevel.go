package launcher

import (
	"log/slog"
	"strconv"
)

// levelNames are the level names of slog, zap, hclog, pino and syslog, in
// any case. keep marks those that the record's level says only in part:
// the VM's name is kept beside it (see vmLevelKey).
var levelNames = []struct {
	name  string
	level slog.Level
	keep  bool
}{
	{"info", slog.LevelInfo, false},
	{"debug", slog.LevelDebug, false},
	{"warn", slog.LevelWarn, false},
	{"error", slog.LevelError, false},
	{"warning", slog.LevelWarn, false},
	{"trace", slog.LevelDebug, true}, // visible where debug is
	{"fatal", slog.LevelError, true},
	{"panic", slog.LevelError, true},
	{"dpanic", slog.LevelError, true},
	{"critical", slog.LevelError, true},
	{"crit", slog.LevelError, true},
	{"alert", slog.LevelError, true},
	{"emerg", slog.LevelError, true},
	{"emergency", slog.LevelError, true},
}

// parseLevel maps a level name to a slog level, and reports whether the
// level says all of the name. slog's names with an offset ("ERROR+2",
// "DEBUG-4") are those levels; "trace" is DEBUG, so that it shows where
// debug does; zap's "dpanic", "panic" and "fatal" and syslog's names above
// error are ERROR; an unknown name is INFO.
func parseLevel(name []byte) (slog.Level, bool) {
	for _, n := range levelNames {
		if equalFoldASCII(name, n.name) {
			return n.level, !n.keep
		}
	}
	var l slog.Level
	if l.UnmarshalText(name) == nil {
		return l, true
	}
	return slog.LevelInfo, false
}

// numericLevel maps a number level, in pino's scale (10 trace, 20 debug,
// 30 info, 40 warn, 50 error, 60 fatal), to a slog level: each level
// covers the numbers from its own up to the next, and trace and below are
// DEBUG. Unless the number is one of 20, 30, 40 and 50, the VM's level is
// kept: pino's name for 10 and 60, else keepText says to keep the number.
func numericLevel(text []byte) (l slog.Level, name string, keepText bool) {
	switch string(text) {
	case "10":
		return slog.LevelDebug, "trace", false
	case "20":
		return slog.LevelDebug, "", false
	case "30":
		return slog.LevelInfo, "", false
	case "40":
		return slog.LevelWarn, "", false
	case "50":
		return slog.LevelError, "", false
	case "60":
		return slog.LevelError, "fatal", false
	}
	// A valid JSON number: ParseFloat fails only out of range, with ±Inf.
	x, _ := strconv.ParseFloat(string(text), 64)
	switch {
	case x < 30:
		l = slog.LevelDebug
	case x < 40:
		l = slog.LevelInfo
	case x < 50:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	return l, "", true
}

// equalFoldASCII reports whether b is name, a lower-case ASCII word, in
// any case.
func equalFoldASCII(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}
