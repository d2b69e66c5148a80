package launcher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// benchLines are 4096 lines of each format of bench/'s BenchmarkLogPipe.
var benchLines = map[string]func(i int) string{
	"plain": func(i int) string {
		return fmt.Sprintf("2025-01-02T03:04:05.%06dZ INFO block accepted height=%d hash=0x%064x txs=%d\n", i, 10_000_000+i, i, 1000+i)
	},
	"json": func(i int) string {
		return fmt.Sprintf(`{"time":"2025-01-02T03:04:05.%06dZ","level":"INFO","msg":"block accepted","height":%d,"hash":"0x%064x","txs":%d}`+"\n", i, 10_000_000+i, i, 1000+i)
	},
	"zap": func(i int) string {
		return fmt.Sprintf(`{"level":"info","ts":1735787045.%06d,"caller":"chain/accept.go:142","msg":"block accepted","height":%d,"hash":"0x%064x","txs":%d}`+"\n", i, 10_000_000+i, i, 1000+i)
	},
	"hclog": func(i int) string {
		return fmt.Sprintf(`{"@level":"info","@message":"block accepted","@module":"vm.chain","@timestamp":"2025-01-02T03:04:05.%06dZ","hash":"0x%064x","height":%d,"txs":%d}`+"\n", i, i, 10_000_000+i, 1000+i)
	},
}

// BenchmarkLogPipeLines is the log path alone, in process: lines of a VM's
// output, already read, through logPipe into a handler that is enabled
// (every record is built) and drops the records, so that its allocs/line
// are those of the log path before the handler. bench/'s BenchmarkLogPipe
// measures the same path end to end, pipes, process and real handlers
// included.
func BenchmarkLogPipeLines(b *testing.B) {
	const lines = 4096
	for _, format := range []string{"plain", "json", "zap", "hclog"} {
		b.Run(format, func(b *testing.B) {
			var out bytes.Buffer
			for i := range lines {
				out.WriteString(benchLines[format](i))
			}
			input := out.Bytes()
			log := slog.New(enabledDiscard{}).With(slog.String("vm", "bench"), slog.Int("pid", 1), slog.String("stream", "stdout"))
			b.SetBytes(int64(len(input)))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			for b.Loop() {
				p := &logPipe{log: log}
				p.run(bytes.NewReader(input))
			}
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(b.N*lines), "allocs/line")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
		})
	}
}

// BenchmarkParseJSONLine is jsonParser.parse alone, on one line of each
// JSON format: checking the whole line and finding its fields, before any
// string is made.
func BenchmarkParseJSONLine(b *testing.B) {
	for _, format := range []string{"json", "zap", "hclog"} {
		b.Run(format, func(b *testing.B) {
			line := []byte(strings.TrimSuffix(benchLines[format](7), "\n"))
			b.SetBytes(int64(len(line)))
			var p jsonParser
			for b.Loop() {
				if !p.parse(line) {
					b.Fatalf("not parsed: %s", line)
				}
			}
		})
	}
}

// enabledDiscard is enabled at every level, so records are built, and drops
// them.
type enabledDiscard struct{}

func (enabledDiscard) Enabled(context.Context, slog.Level) bool  { return true }
func (enabledDiscard) Handle(context.Context, slog.Record) error { return nil }
func (h enabledDiscard) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h enabledDiscard) WithGroup(string) slog.Handler           { return h }
