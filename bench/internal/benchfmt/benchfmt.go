// Package benchfmt reads the output of `go test -bench`, as the tables of
// docs/PERFORMANCE.md (benchtable, and bench/peers' peertable) read it.
package benchfmt

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

// Results holds each benchmark's values per unit, over its counts, by the
// benchmark's name without its prefix and -GOMAXPROCS suffix.
type Results map[string]map[string][]float64

// Median returns the median of a benchmark's values in unit, and how many
// there are.
func (r Results) Median(name, unit string) (float64, int) {
	v := r[name][unit]
	return median.Of(v), len(v)
}

// Parse reads the lines of the benchmarks whose names start with prefix
// (such as "Benchmark" or "BenchmarkPeers/"); other lines are passed over.
func Parse(in io.Reader, prefix string) (Results, error) {
	r := Results{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], prefix), "")
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

// Main is a table command's main: it parses the file its first argument
// names (else stdin) with prefix and prints what print makes of it; it
// exits 1 on an error.
func Main(prefix string, print func(io.Writer, Results)) {
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
	r, err := Parse(in, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	print(os.Stdout, r)
}
