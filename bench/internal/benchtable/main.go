// Command benchtable reads the output of `make bench` and prints the table
// of docs/PERFORMANCE.md: the median of each benchmark over its counts, the
// ratios to the floor taken in that same run, and the targets.
//
//	make bench | tee bench.txt
//	go run ./bench/internal/benchtable bench.txt
package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/vmre/vmre/bench/internal/benchfmt"
)

// results holds each benchmark's values per unit, over its counts.
type results = benchfmt.Results

func main() { benchfmt.Main("Benchmark", printTable) }

// row is one line of the table: a benchmark, optionally against a reference
// benchmark of the same run with a target for the ratio (or the difference).
type row struct {
	name, unit string
	ref        string  // the benchmark the ratio is taken to, or ""
	refUnit    string  // the unit of ref to take the ratio to, when not unit
	minus      bool    // show the difference to ref, in unit, instead of the ratio
	target     float64 // the target for the ratio or, without ref, the value
	atMost     bool    // the ratio (value) must be at most target, else at least
}

var rows = slices.Concat([]row{
	{name: "Launch/floor", unit: "ns/op"},
	{name: "Launch/init-only", unit: "ns/op", ref: "Launch/floor"},
	{name: "Launch/vmre", unit: "ns/op", ref: "Launch/floor", target: 2, atMost: true},
	{name: "Launch/vmre", unit: "ns/op", ref: "Launch/init-only", minus: true, target: 0.5e6, atMost: true},
	{name: "Launch/vmre", unit: "initialize-ns/launch"},
	{name: "Launch/vmre-warm-up", unit: "ns/op", ref: "Launch/floor"},
	{name: "LaunchConcurrent/floor", unit: "ns/op"},
	{name: "LaunchConcurrent/vmre", unit: "ns/op", ref: "LaunchConcurrent/floor", target: 1.3, atMost: true},
	{name: "Launch64/floor", unit: "ns/op"},
	{name: "Launch64/limit=none", unit: "ns/op", ref: "Launch64/floor"},
	{name: "Launch64/limit=none", unit: "failed/op"},
	{name: "Launch64/limit=default", unit: "ns/op", ref: "Launch64/floor"},
	{name: "Launch64/limit=default", unit: "failed/op"},
	{name: "Launch64/limit=2", unit: "ns/op", ref: "Launch64/floor"},
	{name: "Launch64/limit=2", unit: "failed/op"},
	{name: "Node64/floor", unit: "ns/op"},
	{name: "Node64/node", unit: "ns/op", ref: "Node64/floor", target: 1.5, atMost: true},
	{name: "Node64/floor", unit: "stopped-ns/op"},
	{name: "Node64/node", unit: "stopped-ns/op", ref: "Node64/floor", target: 2, atMost: true},
	{name: "Node64/node", unit: "heap-B/VM", target: 64 << 10, atMost: true},
	{name: "Node64/node", unit: "full-heap-B/VM"},
	{name: "Node64/node", unit: "rss-B/VM"},
	{name: "Node64/node", unit: "full-rss-B/VM"},
	{name: "Node64/floor", unit: "host-cpu-ns/op"},
	{name: "Node64/floor", unit: "vm-cpu-ns/op"},
	{name: "Node64/floor", unit: "cpu-bound-ns/op"},
	{name: "Node64/node", unit: "host-cpu-ns/op", ref: "Node64/floor", refUnit: "host-cpu-ns/op"},
	{name: "Node64/node", unit: "vm-cpu-ns/op", ref: "Node64/floor", refUnit: "vm-cpu-ns/op"},
	{name: "Node64/node", unit: "cpu-bound-ns/op", ref: "Node64/floor", refUnit: "cpu-bound-ns/op"},
	{name: "Node64/node", unit: "ns/op", ref: "Node64/node", refUnit: "cpu-bound-ns/op"},
	{name: "Node64/floor", unit: "stop-cpu-bound-ns/op"},
	{name: "Node64/node", unit: "stop-cpu-bound-ns/op", ref: "Node64/floor", refUnit: "stop-cpu-bound-ns/op"},
	{name: "Node64/node", unit: "stopped-ns/op", ref: "Node64/node", refUnit: "stop-cpu-bound-ns/op"},
	{name: "Node64/node-limit=1-per-cpu", unit: "ns/op", ref: "Node64/floor"},
	{name: "Node64/node-limit=1-per-cpu", unit: "cpu-bound-ns/op"},
	{name: "Node64/node-limit=none", unit: "ns/op", ref: "Node64/floor"},
	{name: "Node64/node-limit=none", unit: "cpu-bound-ns/op"},
	{name: "Node64/node-data-dir", unit: "ns/op", ref: "Node64/floor"},
	{name: "Node64/node-data-dir", unit: "host-cpu-ns/op"},
	{name: "Node64/node-data-dir", unit: "cpu-bound-ns/op"},
	{name: "CallerCheck", unit: "unchecked-ns/launch"},
	{name: "CallerCheck", unit: "checked-ns/launch", ref: "CallerCheck", refUnit: "unchecked-ns/launch", minus: true, target: 0.1e6, atMost: true},
	{name: "CallerCheck", unit: "unchecked-initialize-ns"},
	{name: "CallerCheck", unit: "checked-initialize-ns", ref: "CallerCheck", refUnit: "unchecked-initialize-ns", minus: true},
	{name: "LaunchPinned", unit: "unpinned-ns/launch"},
	{name: "LaunchPinned", unit: "pinned-ns/launch", ref: "LaunchPinned", refUnit: "unpinned-ns/launch"},
	{name: "RegistryLoad", unit: "hash-ns/load"},
	{name: "RegistryLoad", unit: "seal-ns/load", ref: "RegistryLoad", refUnit: "hash-ns/load"},
	{name: "RegistryLoadLarge/unpinned", unit: "load-ns/op"},
	{name: "RegistryLoadLarge/unpinned", unit: "first-exec-ns/op", target: 50e6, atMost: true},
	{name: "RegistryLoadLarge/pinned", unit: "load-ns/op"},
	{name: "RegistryLoadLarge/pinned", unit: "first-exec-ns/op"},
	{name: "Stop/floor", unit: "ns/op"},
	{name: "Stop/vmre", unit: "ns/op", ref: "Stop/floor", target: 1.2, atMost: true},
	{name: "Stop/vmre-subreaper", unit: "ns/op", ref: "Stop/floor", target: 1.2, atMost: true},
	{name: "StopConcurrent/floor", unit: "ns/op"},
	{name: "StopConcurrent/init-only", unit: "ns/op", ref: "StopConcurrent/floor"},
	{name: "StopConcurrent/vmre", unit: "ns/op", ref: "StopConcurrent/floor", target: 2, atMost: true},
	{name: "StopConcurrent/vmre-subreaper", unit: "ns/op", ref: "StopConcurrent/floor", target: 2, atMost: true},
	{name: "FirstCall/grpc/fresh", unit: "ns/op"},
	{name: "FirstCall/grpc/runtime", unit: "ns/op", target: 0.3e6, atMost: true},
	{name: "FirstCall/grpc/runtime-warm-up", unit: "ns/op"},
	{name: "FirstCall/connect/fresh", unit: "ns/op"},
	{name: "FirstCall/connect/runtime", unit: "ns/op", target: 0.3e6, atMost: true},
	{name: "FirstCall/connect/runtime-warm-up", unit: "ns/op"},
	{name: "Initialize/connect-json", unit: "ns/op"},
	{name: "Initialize/connect-proto", unit: "ns/op"},
	{name: "Initialize/grpc", unit: "ns/op"},
	{name: "Initialize/grpcweb", unit: "ns/op"},
	{name: "LogPipe/copy", unit: "MB/s"},
	{name: "IdleVM", unit: "goroutines/VM", target: 3, atMost: true},
	{name: "IdleVM", unit: "fds/VM", target: 3, atMost: true},
	{name: "IdleVM", unit: "heap-B/VM", target: 24 << 10, atMost: true},
	{name: "IdleVM", unit: "stack-B/VM"},
	{name: "IdleVM", unit: "threads/VM"},
	{name: "IdleVM", unit: "sockets/VM"},
	{name: "IdleVM", unit: "client-goroutines/VM"},
	{name: "IdleVM", unit: "client-fds/VM"},
	{name: "IdleVM", unit: "client-heap-B/VM"},
}, logRows())

// logRows are the rows of BenchmarkLogPipe: per handler, each format's
// floor, then its throughput as a ratio to that floor and the host's
// allocations per line.
func logRows() []row {
	var rows []row
	for _, handler := range []string{"TextHandler", "JSONHandler"} {
		for _, format := range []string{"plain", "json", "zap", "hclog"} {
			floor := "LogPipe/" + format + "/" + handler + "/handler-floor"
			name := "LogPipe/" + format + "/" + handler + "/vmre"
			target := 0.6
			if format == "plain" {
				target = 0.8
			}
			rows = append(rows,
				row{name: floor, unit: "MB/s"},
				row{name: name, unit: "MB/s", ref: floor, target: target},
				row{name: name, unit: "allocs/line", target: 3, atMost: true})
		}
	}
	return rows
}

func printTable(w io.Writer, r results) {
	fmt.Fprintln(w, "| benchmark | median | n | ratio | target | met |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
	for _, row := range rows {
		v, n := r.Median(row.name, row.unit)
		if n == 0 {
			fmt.Fprintf(w, "| %s %s | (no result) | 0 | | | |\n", row.name, row.unit)
			continue
		}
		label := row.name
		if row.unit != "ns/op" && !strings.HasSuffix(row.unit, "/s") {
			label += " " + row.unit
		}
		if row.minus {
			label += " − " + row.ref
		}
		ratio, target, met := "", "", ""
		got := v
		if row.ref != "" {
			refUnit := row.unit
			if row.refUnit != "" {
				refUnit = row.refUnit
			}
			ref, m := r.Median(row.ref, refUnit)
			if m == 0 || ref == 0 {
				// Say so, rather than drop the row and with it the
				// benchmark's own median when this row is its only one.
				shown := format(v, row.unit)
				if row.minus {
					shown = ""
				}
				fmt.Fprintf(w, "| %s | %s | %d | (no %s %s) | | |\n", label, shown, n, row.ref, refUnit)
				continue
			}
			got = v / ref
			ratio = fmt.Sprintf("%.2f×", got)
			if row.minus {
				got, v, ratio = v-ref, v-ref, ""
			}
		}
		if row.target != 0 {
			op := "≥"
			ok := got >= row.target
			if row.atMost {
				op, ok = "≤", got <= row.target
			}
			if row.ref != "" && !row.minus {
				target = op + " " + strconv.FormatFloat(row.target, 'g', -1, 64) + "×"
			} else {
				target = op + " " + format(row.target, row.unit)
			}
			met = map[bool]string{true: "yes", false: "**no**"}[ok]
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s |\n", label, format(v, row.unit), n, ratio, target, met)
	}
}

// format prints a value in a unit people read: times in µs or ms.
func format(v float64, unit string) string {
	switch unit {
	case "ns/op", "initialize-ns/launch", "unpinned-ns/launch", "pinned-ns/launch", "hash-ns/load", "seal-ns/load",
		"load-ns/op", "first-exec-ns/op", "stopped-ns/op",
		"checked-ns/launch", "unchecked-ns/launch", "checked-initialize-ns", "unchecked-initialize-ns":
		if v >= 1e6 {
			return fmt.Sprintf("%.2f ms", v/1e6)
		}
		return fmt.Sprintf("%.0f µs", v/1e3)
	case "MB/s":
		return fmt.Sprintf("%.0f MB/s", v)
	case "allocs/line":
		return fmt.Sprintf("%.2f", v)
	case "heap-B/VM", "stack-B/VM", "client-heap-B/VM", "full-heap-B/VM", "rss-B/VM", "full-rss-B/VM":
		return fmt.Sprintf("%.1f KiB", v/1024)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
