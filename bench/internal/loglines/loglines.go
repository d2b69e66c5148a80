// Package loglines makes the VM output of the log-path benchmark: blocks of
// log lines that all have the same length, so that the benchmark knows how
// many bytes a VM writes without counting them.
package loglines

import (
	"bytes"
	"fmt"
)

// Format is the style of the lines.
type Format string

const (
	// Plain lines are unstructured text, as a VM's fmt.Println writes them.
	Plain Format = "plain"
	// JSON lines are slog JSONHandler records, which the host parses.
	JSON Format = "json"
)

// BlockLines is how many lines a block holds.
const BlockLines = 512

// Block returns BlockLines lines of format f, each ending in '\n'.
func Block(f Format) []byte {
	var b bytes.Buffer
	for i := range BlockLines {
		switch f {
		case JSON:
			fmt.Fprintf(&b, `{"time":"2025-01-02T03:04:05.%06dZ","level":"INFO","msg":"block accepted","height":%08d,"hash":"0x%064x","txs":%04d}`+"\n", i, i, i, i%1000)
		default:
			fmt.Fprintf(&b, "2025-01-02T03:04:05.%06dZ INFO block accepted height=%08d hash=0x%064x txs=%04d\n", i, i, i, i%1000)
		}
	}
	return b.Bytes()
}
