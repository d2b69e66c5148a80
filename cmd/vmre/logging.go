package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// logFormat is the value of --log-format.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }

func (f *logFormat) Set(s string) error {
	switch logFormat(s) {
	case logText, logJSON:
		*f = logFormat(s)
		return nil
	}
	return fmt.Errorf("%q is not a log format: use text or json", s)
}

// logFlags are the logging flags every command that logs shares.
type logFlags struct {
	format logFormat
	level  slog.Level
}

func (l *logFlags) register(fs *flag.FlagSet, defaultLevel slog.Level) {
	l.format = logText
	fs.Var(&l.format, "log-format",
		"`format` of the logs on stderr: text (colored on a terminal unless NO_COLOR is set) or json")
	fs.TextVar(&l.level, "log-level", defaultLevel, "the lowest `level` logged: debug, info, warn or error")
}

// logger returns the logger of --log-format and --log-level on stderr.
func (l logFlags) logger(e env) *slog.Logger {
	return slog.New(l.handler(e, l.level))
}

// loggerAtLeast is like logger, but shows records of level floor and above
// even when --log-level is higher: serve's handshake records must show.
func (l logFlags) loggerAtLeast(e env, floor slog.Level) *slog.Logger {
	return slog.New(l.handler(e, min(l.level, floor)))
}

// handler picks the handler: JSON with --log-format json; otherwise tint,
// colored on a terminal unless NO_COLOR is set; plain slog text when
// stderr is not a terminal.
func (l logFlags) handler(e env, level slog.Level) slog.Handler {
	if l.format == logJSON {
		return slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: jsonAttr})
	}
	if !isTerminal(e.stderr) {
		return slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	}
	return tint.NewTextHandler(e.stderr, &tint.Options{
		Level:      level,
		TimeFormat: "15:04:05.000",
		NoColor:    e.getenv("NO_COLOR") != "",
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// jsonAttr gives the JSON logs one unit of time and no null lists: a
// duration is a number of milliseconds ("graceful_timeout":5000, as
// --events' _ms fields), not slog's nanoseconds; a nil list is [].
func jsonAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		return slog.Float64(a.Key, float64(a.Value.Duration().Microseconds())/1000)
	case slog.KindAny:
		if v := reflect.ValueOf(a.Value.Any()); v.Kind() == reflect.Slice && v.IsNil() {
			return slog.Any(a.Key, []any{})
		}
	}
	return a
}
