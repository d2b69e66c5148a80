// Command minvm is a minimal vmre VM: one tiny handler, GET /ping, served
// through client.Serve. It is what a VM author's smallest program costs.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/vmre/vmre/client"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong\n") })
	if err := client.Serve(context.Background(), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
