// Command floorvm is the floor of a VM launch: the least a plugin can do to
// tell its host that it is up. It dials the address given as its only
// argument, writes one line, and exits 0 on SIGTERM.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Caught before the line is written, so that a host that has read it
	// can stop the plugin gracefully.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: floorvm HOST:PORT")
		os.Exit(2)
	}
	conn, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := io.WriteString(conn, "ready\n"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-term
	conn.Close()
}
