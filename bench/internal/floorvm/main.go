// Command floorvm is the floor of a VM launch: the least a plugin can do to
// tell its host that it is up. It dials the address given as its only
// argument, writes one line, and exits 0 on SIGTERM.
package main

import (
	"fmt"
	"os"

	"github.com/vmre/vmre/bench/internal/floorline"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: floorvm HOST:PORT")
		os.Exit(2)
	}
	os.Exit(floorline.Run(os.Args[1]))
}
