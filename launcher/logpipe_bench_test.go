package launcher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
)

// BenchmarkLogPipeLines is the log path alone, in process: lines of a VM's
// output, already read, through logPipe into a handler that is enabled
// (every record is built) and drops the records. bench/'s BenchmarkLogPipe
// measures the same path end to end, pipes and process included.
func BenchmarkLogPipeLines(b *testing.B) {
	for _, format := range []string{"plain", "json"} {
		b.Run(format, func(b *testing.B) {
			var out bytes.Buffer
			for i := range 4096 {
				if format == "json" {
					fmt.Fprintf(&out, `{"time":"2025-01-02T03:04:05.%06dZ","level":"INFO","msg":"block accepted","height":%08d,"hash":"0x%064x"}`+"\n", i, i, i)
				} else {
					fmt.Fprintf(&out, "2025-01-02T03:04:05.%06dZ INFO block accepted height=%08d hash=0x%064x\n", i, i, i)
				}
			}
			input := out.Bytes()
			log := slog.New(enabledDiscard{}).With(slog.String("vm", "bench"), slog.Int("pid", 1))
			b.SetBytes(int64(len(input)))
			b.ReportAllocs()
			for b.Loop() {
				p := &logPipe{log: log.With(slog.String("stream", "stdout"))}
				p.run(bytes.NewReader(input))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4096), "ns/line")
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
