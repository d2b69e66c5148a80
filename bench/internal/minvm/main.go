// Command minvm is a minimal vmre VM: GET /ping and grpc.health.v1, served
// through client.Serve. It is what a VM author's smallest program costs.
//
// With -no-warm-up it serves without client.Serve's warm-up
// (client.WithoutWarmUp), so that the benchmarks can tell what it saves.
//
// With MINVM_FILL_LOG=BYTES in its environment, each SIGUSR1 makes it write
// BYTES of log lines (slog's JSON, about 150 bytes each) to stderr, then
// the line "log filled": a benchmark fills its host's backlog of it so.
//
// With -bench-init-only HOST:PORT it does what floorvm does instead of
// client.Serve: the same program, imports and package init included, up to
// main, and the least a plugin can do after that.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/bench/internal/floorline"
	"github.com/vmre/vmre/client"
)

// fillKey names the size of the log lines each SIGUSR1 asks for.
const fillKey = "MINVM_FILL_LOG"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-bench-init-only" {
		os.Exit(floorline.Run(os.Args[2]))
	}
	if v := os.Getenv(fillKey); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || fillSignal == nil {
			fmt.Fprintf(os.Stderr, "%s=%q: want a size in bytes, on Unix (SIGUSR1 asks for the lines)\n", fillKey, v)
			os.Exit(2)
		}
		fill := make(chan os.Signal, 1)
		signal.Notify(fill, fillSignal)
		go fillLog(fill, n) // ends with the process
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong\n") })
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker()))
	var opts []client.Option
	if len(os.Args) == 2 && os.Args[1] == "-no-warm-up" {
		opts = append(opts, client.WithoutWarmUp())
	}
	if err := client.Serve(context.Background(), mux, opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// fillLog writes n bytes of log lines to stderr at each signal on fill.
func fillLog(fill <-chan os.Signal, n int) {
	w := bufio.NewWriterSize(os.Stderr, 64<<10)
	for range fill {
		for i, written := 0, 0; written < n; i++ {
			k, _ := fmt.Fprintf(w, `{"time":"2026-12-01T10:00:00.000000000Z","level":"INFO","msg":"block accepted","height":%d,"hash":"0x5e3c9f1b2a7d4e6f","parent":"0x1b2a7d4e6f5e3c9f"}`+"\n", i)
			written += k
		}
		fmt.Fprintln(w, `{"level":"INFO","msg":"log filled"}`)
		w.Flush()
	}
}
