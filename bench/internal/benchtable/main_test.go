package main

import (
	"strings"
	"testing"

	"github.com/vmre/vmre/bench/internal/benchfmt"
)

// A run of Launch/vmre alone (BENCH=Launch/vmre): its rows are taken to
// Launch/floor and Launch/init-only, which did not run. Its median is
// still in the table, and the table says what the ratio lacks.
func TestMissingReference(t *testing.T) {
	r, err := benchfmt.Parse(strings.NewReader(`goos: linux
BenchmarkLaunch/vmre-2         	      20	   4000000 ns/op	    110000 initialize-ns/launch
BenchmarkLaunch/vmre-2         	      20	   5000000 ns/op	    130000 initialize-ns/launch
PASS
`), "Benchmark")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	printTable(&out, r)
	for _, want := range []string{
		"| Launch/vmre | 4.50 ms | 2 | (no Launch/floor ns/op) | | |\n",
		"| Launch/vmre − Launch/init-only |  | 2 | (no Launch/init-only ns/op) | | |\n",
		"| Launch/vmre initialize-ns/launch | 120 µs | 2 |",
		"| Launch/floor ns/op | (no result) | 0 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

// Ratios are of the medians of the same run; the GOMAXPROCS suffix is not
// part of a name.
func TestRatio(t *testing.T) {
	r, err := benchfmt.Parse(strings.NewReader(`BenchmarkStop/floor-2 	20	 400000 ns/op
BenchmarkStop/floor-2 	20	 600000 ns/op
BenchmarkStop/vmre-2  	20	1000000 ns/op
BenchmarkStop/vmre-2  	20	1400000 ns/op
`), "Benchmark")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	printTable(&out, r)
	if want := "| Stop/vmre | 1.20 ms | 2 | 2.40× | ≤ 1.2× | **no** |\n"; !strings.Contains(out.String(), want) {
		t.Errorf("the table lacks %q:\n%s", want, out.String())
	}
}
