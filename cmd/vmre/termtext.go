package main

import (
	"io"

	"github.com/vmre/vmre/internal/safetext"
)

// textFor returns how a command writes text that comes from VMs (names,
// log records, errors) to w: escaped on a terminal, as journalctl and ls
// do, so that a VM's control bytes cannot drive the operator's terminal
// (set its title, clear it, hide what follows); as it is with raw (--raw)
// or when w is not a terminal, for the programs that read it. The escape
// is the node's own text log's: \x1b, \a, \xff.
func (e env) textFor(w io.Writer, raw bool) func(string) string {
	if raw || !e.isTTY(w) {
		return func(s string) string { return s }
	}
	return safetext.Terminal
}
