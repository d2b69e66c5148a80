package benchfmt

import (
	"strings"
	"testing"
)

// Parse keeps the lines of the prefix's benchmarks, by name without the
// prefix and -GOMAXPROCS, each unit's values over the counts.
func TestParse(t *testing.T) {
	r, err := Parse(strings.NewReader(`goos: linux
BenchmarkPeers/vmre/launch-2   20   5000000 ns/op   3 goroutines/VM
BenchmarkPeers/vmre/launch-2   20   7000000 ns/op   5 goroutines/VM
BenchmarkLaunch/vmre-2         20   9000000 ns/op
PASS
`), "BenchmarkPeers/")
	if err != nil {
		t.Fatal(err)
	}
	if v, n := r.Median("vmre/launch", "ns/op"); v != 6e6 || n != 2 {
		t.Errorf("vmre/launch ns/op: median %v of %d, want 6e6 of 2", v, n)
	}
	if v, n := r.Median("vmre/launch", "goroutines/VM"); v != 4 || n != 2 {
		t.Errorf("vmre/launch goroutines/VM: median %v of %d, want 4 of 2", v, n)
	}
	if len(r) != 1 {
		t.Errorf("parsed %v; want the prefix's benchmark alone", r)
	}
	if _, err := Parse(strings.NewReader("BenchmarkPeers/x-2 20 fast ns/op\n"), "BenchmarkPeers/"); err == nil {
		t.Error("a value that is not a number parsed")
	}
}
