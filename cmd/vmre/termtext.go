package main

import (
	"io"
	"strings"

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

// textLines is text for a message of several lines (an error that
// quotes a VM's last lines of output): each line through text, the
// line breaks kept.
func textLines(text func(string) string, s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = text(l)
	}
	return strings.Join(lines, "\n")
}

// escaped is r with what a VM or its file gives (names, aliases, its
// address, errors that quote its output) passed through text.
func (r psRow) escaped(text func(string) string) psRow {
	r.Name, r.ID, r.Addr, r.Pending = text(r.Name), text(r.ID), text(r.Addr), text(r.Pending)
	r.LastExit, r.Error = textLines(text, r.LastExit), textLines(text, r.Error)
	aliases := make([]string, len(r.Aliases))
	for i, a := range r.Aliases {
		aliases[i] = text(a)
	}
	r.Aliases = aliases
	return r
}
