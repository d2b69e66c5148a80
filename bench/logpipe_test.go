package bench

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/bench/internal/loglines"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/server"
)

// logBlocks is how many blocks of lines (see package loglines) the VM of
// BenchmarkLogPipe writes: 19 MB of plain lines of 145 bytes, 6 MB of JSON
// lines of 182 bytes, so that the VM's start is a few percent of the time.
var logBlocks = map[loglines.Format]int{loglines.Plain: 256, loglines.JSON: 64}

// BenchmarkLogPipe is the throughput of a VM's output into the host's
// logger: a VM completes its handshake, writes lines to stdout as fast as it
// can, and exits; the timed part runs from launch to Done, with a logger
// whose handler is enabled (every record is built) and drops the records.
// copy is the same VM's plain lines read by plain os/exec code with
// io.Copy into io.Discard, through a handshake with the same engine.
func BenchmarkLogPipe(b *testing.B) {
	path := plugins(b).logs
	for _, format := range []loglines.Format{loglines.Plain, loglines.JSON} {
		b.Run(string(format), func(b *testing.B) {
			l, err := launcher.New(launcher.Config{Logger: slog.New(enabledDiscard{})})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			blocks := logBlocks[format]
			b.SetBytes(int64(blocks * len(loglines.Block(format))))
			for b.Loop() {
				rt, err := l.Launch(context.Background(), exec.Command(path, string(format), strconv.Itoa(blocks)))
				if err != nil {
					b.Fatal(err)
				}
				<-rt.Done()
				if exit, _ := rt.Exit(); !exit.Success() {
					b.Fatalf("log VM: %s", exit)
				}
			}
		})
	}
	b.Run("copy", func(b *testing.B) {
		e := serveEngine(b)
		blocks := logBlocks[loglines.Plain]
		size := int64(blocks * len(loglines.Block(loglines.Plain)))
		b.SetBytes(size)
		for b.Loop() {
			launch, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", vmre.ProtocolVersion)})
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(path, string(loglines.Plain), strconv.Itoa(blocks))
			cmd.Env = append(cmd.Environ(), vmre.EngineAddressKey+"="+e.addr, vmre.EngineTokenKey+"="+launch.Token())
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
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
