package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/bench/internal/loglines"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

// logBytes is about how much a VM of BenchmarkLogPipe writes per op: tens
// of milliseconds of lines, against which the signal that starts them and
// the VM's exit are small.
const logBytes = 8 << 20

// logBlocks is how many blocks of lines of format f (see package loglines)
// make about logBytes.
func logBlocks(f loglines.Format) int { return logBytes / len(loglines.Block(f)) }

// logHandlers are the handlers the records go to: the stdlib's own, as a
// node uses them, writing to a writer that drops the bytes.
var logHandlers = []struct {
	name string
	new  func() slog.Handler
}{
	{"TextHandler", func() slog.Handler { return slog.NewTextHandler(io.Discard, nil) }},
	{"JSONHandler", func() slog.Handler { return slog.NewJSONHandler(io.Discard, nil) }},
}

// BenchmarkLogPipe is the throughput of a VM's output into the host's
// logger, against what the same records cost the handler alone.
//
// LogPipe/FORMAT/HANDLER/vmre: a VM completes its handshake, waits for
// the word to start, writes about 8 MiB of lines of FORMAT (see package
// loglines) to stdout as fast as it can, and exits; the timed part runs
// from that word to Done, with a logger on HANDLER (slog's TextHandler or
// JSONHandler, writing to io.Discard). The launch is not timed, as the
// floor has none: BenchmarkLaunch measures it.
//
// LogPipe/FORMAT/HANDLER/handler-floor: the records the host makes of the
// same lines, built in process and handed to the same handler (bound to
// vm, pid and stream as the launcher binds it), stamped once per 512 lines
// as the launcher stamps them once per read: no process, no pipe, no
// parsing. It runs as many records and bytes per op as the VM writes, right
// after vmre, so that the two see the same machine.
//
// LogPipe/copy: the same VM's plain lines read by plain os/exec code with
// io.Copy into io.Discard, through a handshake with the same engine, timed
// in the same way.
//
// Each reports allocs/line, the host's allocations over the lines.
func BenchmarkLogPipe(b *testing.B) {
	path := plugins(b).logs
	for _, format := range loglines.Formats {
		b.Run(string(format), func(b *testing.B) {
			for _, h := range logHandlers {
				b.Run(h.name, func(b *testing.B) {
					b.Run("vmre", func(b *testing.B) { logPipeVMRE(b, path, format, h.new()) })
					b.Run("handler-floor", func(b *testing.B) { handlerFloor(b, format, h.new()) })
				})
			}
		})
	}
	b.Run("copy", func(b *testing.B) {
		e, addr := vmretest.StartEngine(b, server.Config{}, nil)
		blocks := logBlocks(loglines.Plain)
		size := int64(blocks * len(loglines.Block(loglines.Plain)))
		b.SetBytes(size)
		for b.Loop() {
			launch, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", vmre.ProtocolVersion)})
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(path, string(loglines.Plain), strconv.Itoa(blocks))
			cmd.Env = append(cmd.Environ(), vmre.EngineAddressKey+"="+addr, vmre.EngineTokenKey+"="+launch.Token())
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			<-launch.Initialized()
			b.StartTimer()
			startWriting(b, cmd.Process.Pid)
			n, err := io.Copy(io.Discard, out)
			if err := cmd.Wait(); err != nil {
				b.Fatalf("log VM: %v", err)
			}
			launch.End()
			if err != nil || n != size {
				b.Fatalf("copied %d bytes of %d: %v", n, size, err)
			}
		}
	})
}

// startWriting tells the log VM pid, which has completed its handshake, to
// write its lines.
func startWriting(b *testing.B, pid int) {
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(os.Interrupt)
	}
	if err != nil {
		b.Fatalf("start the log VM: %v", err)
	}
}

// logPipeVMRE runs, per op, a log VM that writes lines of format into a
// launcher whose logger's handler is h.
func logPipeVMRE(b *testing.B, path string, format loglines.Format, h slog.Handler) {
	l, err := launcher.New(launcher.Config{Logger: slog.New(h)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	blocks := logBlocks(format)
	b.SetBytes(int64(blocks * len(loglines.Block(format))))
	defer countAllocs(b, blocks*loglines.BlockLines)()
	for b.Loop() {
		b.StopTimer()
		rt, err := l.Launch(context.Background(), exec.Command(path, string(format), strconv.Itoa(blocks)))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		startWriting(b, rt.Status().Pid)
		<-rt.Done()
		if exit, _ := rt.Exit(); !exit.Success() {
			b.Fatalf("log VM: %s", exit)
		}
	}
}

// handlerFloor hands h, per op, the records of as many lines of format as
// a VM of BenchmarkLogPipe writes.
func handlerFloor(b *testing.B, format loglines.Format, h slog.Handler) {
	lines := loglines.Lines(format)
	h = h.WithAttrs([]slog.Attr{slog.String("vm", "logvm"), slog.Int("pid", 1), slog.String("stream", "stdout")})
	blocks := logBlocks(format)
	b.SetBytes(int64(blocks * len(loglines.Block(format))))
	ctx := context.Background()
	defer countAllocs(b, blocks*loglines.BlockLines)()
	for b.Loop() {
		for range blocks {
			now := time.Now()
			for _, l := range lines {
				if !h.Enabled(ctx, l.Level) {
					continue
				}
				r := slog.NewRecord(now, l.Level, l.Msg, 0)
				r.AddAttrs(l.Attrs...)
				if err := h.Handle(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// countAllocs reports, when the function it returns is called after the
// loop, the allocations of the whole process per line, for linesPerOp
// lines in each op.
func countAllocs(b *testing.B, linesPerOp int) func() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	return func() {
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.Mallocs-before)/float64(b.N*linesPerOp), "allocs/line")
	}
}
