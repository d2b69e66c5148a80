// Command logvm is the VM of the log-path benchmark: it completes its
// handshake, waits for os.Interrupt (SIGINT), the host's word that it
// times from now on, writes BLOCKS blocks of log lines (see package
// loglines) to stdout as fast as the pipe takes them, and exits 0.
//
//	logvm plain|json|zap|hclog BLOCKS
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"

	"github.com/vmre/vmre/bench/internal/loglines"
	"github.com/vmre/vmre/client"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: logvm plain|json|zap|hclog BLOCKS")
	}
	blocks, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	format := loglines.Format(args[0])
	if !slices.Contains(loglines.Formats, format) {
		return fmt.Errorf("logvm: unknown format %q", args[0])
	}
	block := loglines.Block(format)
	start := make(chan os.Signal, 1)
	signal.Notify(start, os.Interrupt)
	// The VM never serves: the host only connects to its listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	if _, err := client.Initialize(context.Background(), ln.Addr().String()); err != nil {
		return err
	}
	<-start
	for range blocks {
		if _, err := os.Stdout.Write(block); err != nil {
			return err
		}
	}
	return nil
}
