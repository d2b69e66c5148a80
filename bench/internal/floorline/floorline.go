// Package floorline is the least a plugin can do to tell its host that it
// is up: dial the host, write one line, and exit 0 on SIGTERM. floorvm is
// that alone; minvm does it instead of client.Serve when told to, so that
// its start-up, imports and package init included, can be timed apart from
// what the engine adds.
package floorline

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// Run dials addr, writes a line, and waits for SIGTERM. It returns the
// process's exit code.
func Run(addr string) int {
	// Caught before the line is written, so that a host that has read it
	// can stop the plugin gracefully.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := io.WriteString(conn, "ready\n"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-term
	conn.Close()
	return 0
}
