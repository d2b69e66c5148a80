// Command peertable reads the output of `make bench-peers` and prints the
// table of docs/PERFORMANCE.md, "Peers": per runtime, the median of each
// measure over the counts of the run, and vmre's launch and first call
// against the better of AvalancheGo and go-plugin.
//
//	make bench-peers | tee peers.txt
//	cd bench/peers && go run ./peertable ../../peers.txt
package main

import (
	"fmt"
	"io"

	"github.com/vmre/vmre/bench/internal/benchfmt"
)

// results holds each benchmark's values per unit, over its counts.
type results benchfmt.Results

func main() {
	benchfmt.Main("BenchmarkPeers/", func(w io.Writer, r benchfmt.Results) { printTable(w, results(r)) })
}

// value is the median of a runtime's step in unit, and whether it ran.
func (r results) value(runtime, step, unit string) (float64, bool) {
	v, n := benchfmt.Results(r).Median(runtime+"/"+step, unit)
	return v, n > 0
}

// runtimes are the table's columns.
var runtimes = []struct{ name, title string }{
	{"floor", "floor"}, {"avalanchego", "AvalancheGo"}, {"go-plugin", "go-plugin"}, {"vmre", "vmre"},
}

func printTable(w io.Writer, r results) {
	fmt.Fprint(w, "|")
	for _, rt := range runtimes {
		fmt.Fprintf(w, " | %s", rt.title)
	}
	fmt.Fprintln(w, " |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ms := func(step, unit string) func(string) string {
		return func(rt string) string {
			v, ok := r.value(rt, step, unit)
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.2f", v/1e6)
		}
	}
	row := func(label string, cell func(string) string) {
		fmt.Fprintf(w, "| %s |", label)
		for _, rt := range runtimes {
			fmt.Fprintf(w, " %s |", cell(rt.name))
		}
		fmt.Fprintln(w)
	}
	row("launch (to handshake done) ms", ms("launch", "ns/op"))
	row("first RPC after it ms", ms("first-rpc", "ns/op"))
	row("launch + first RPC ms", ms("launch-rpc", "ns/op"))
	ready, stopped := ms("concurrent", "ns/op"), ms("concurrent", "stopped-ns/op")
	row("16 concurrent launches, all ready / all stopped ms", func(rt string) string { return ready(rt) + " / " + stopped(rt) })
	row("idle per VM: goroutines / fds / heap KiB", func(rt string) string {
		g, ok := r.value(rt, "idle", "goroutines/VM")
		if !ok {
			return "–"
		}
		f, _ := r.value(rt, "idle", "fds/VM")
		h, _ := r.value(rt, "idle", "heap-B/VM")
		return fmt.Sprintf("%.0f / %.0f / %.0f", g, f, h/1024)
	})
	vmre, ok1 := r.value("vmre", "launch-rpc", "ns/op")
	avago, ok2 := r.value("avalanchego", "launch-rpc", "ns/op")
	gop, ok3 := r.value("go-plugin", "launch-rpc", "ns/op")
	if ok1 && ok2 && ok3 {
		best := min(avago, gop)
		met := map[bool]string{true: "met", false: "not met"}[vmre/best <= 0.8]
		fmt.Fprintf(w, "\nvmre's launch + first RPC: %.2f× the better of AvalancheGo and go-plugin (goal ≤ 0.8×: %s)\n", vmre/best, met)
	}
}
