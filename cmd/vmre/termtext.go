package main

import "io"

// textFor returns how a command writes text that comes from VMs (names,
// log records) to w: escaped on a terminal, as journalctl and ls do, so
// that a VM's control bytes cannot drive the operator's terminal; as it
// is with raw (--raw) or when w is not a terminal.
func (e env) textFor(w io.Writer, raw bool) func(string) string {
	if raw || !e.isTTY(w) {
		return func(s string) string { return s }
	}
	return terminalText
}

// terminalText is what textFor writes of a VM's text to a terminal. It is
// the one place where the project's sanitising of terminal text (control
// bytes and invalid UTF-8 escaped, as the node's own log escapes them) is
// to be called; it passes s as it is until that package is in the tree.
func terminalText(s string) string { return s }
