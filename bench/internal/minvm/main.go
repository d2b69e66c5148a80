// Command minvm is a minimal vmre VM: GET /ping and grpc.health.v1, served
// through client.Serve. It is what a VM author's smallest program costs.
//
// With -no-warm-up it serves without client.Serve's warm-up
// (client.WithoutWarmUp), so that the benchmarks can tell what it saves.
//
// With -bench-init-only HOST:PORT it does what floorvm does instead of
// client.Serve: the same program, imports and package init included, up to
// main, and the least a plugin can do after that.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"connectrpc.com/grpchealth"

	"github.com/vmre/vmre/bench/internal/floorline"
	"github.com/vmre/vmre/client"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-bench-init-only" {
		os.Exit(floorline.Run(os.Args[2]))
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
