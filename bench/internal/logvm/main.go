// Command logvm is the VM of the log-path benchmark: it completes its
// handshake, writes BLOCKS blocks of log lines (see package loglines) to
// stdout as fast as the pipe takes them, and exits 0.
//
//	logvm plain|json BLOCKS
package main

import (
	"context"
	"fmt"
	"os"
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
		return fmt.Errorf("usage: logvm plain|json BLOCKS")
	}
	blocks, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	block := loglines.Block(loglines.Format(args[0]))
	// The VM never serves: the address only has to be a loopback host:port.
	if _, err := client.Initialize(context.Background(), "127.0.0.1:1"); err != nil {
		return err
	}
	for range blocks {
		if _, err := os.Stdout.Write(block); err != nil {
			return err
		}
	}
	return nil
}
