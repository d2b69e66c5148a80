// Command peertable reads the output of `make bench-peers` and prints the
// table of docs/PERFORMANCE.md, "Peers": per runtime, the median of each
// measure over the counts of the run, and vmre's launch and first call
// against the better of AvalancheGo and go-plugin.
//
//	make bench-peers | tee peers.txt
//	cd bench/peers && go run ./peertable ../../peers.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmre/vmre/bench/internal/median"
)

// procSuffix is the -GOMAXPROCS suffix of a benchmark's name.
var procSuffix = regexp.MustCompile(`-\d+$`)

// results holds each benchmark's values per unit, over its counts.
type results map[string]map[string][]float64

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	r, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	printTable(os.Stdout, r)
}

func parse(in io.Reader) (results, error) {
	r := results{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkPeers/") {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "BenchmarkPeers/"), "")
		if r[name] == nil {
			r[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q: %w", name, f[i], err)
			}
			r[name][f[i+1]] = append(r[name][f[i+1]], v)
		}
	}
	return r, sc.Err()
}

// value is the median of a runtime's step in unit, and whether it ran.
func (r results) value(runtime, step, unit string) (float64, bool) {
	v := r[runtime+"/"+step][unit]
	return median.Of(v), len(v) > 0
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
