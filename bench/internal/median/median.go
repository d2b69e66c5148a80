// Package median is the median the benchmarks report and benchtable
// prints, so that both mean the same by it.
package median

import "slices"

// Of returns the median of v: its middle value, or the mean of its two
// middle values when it has an even count; 0 when v is empty. v is not
// changed.
func Of[T ~int64 | ~float64](v []T) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return float64(s[mid])
	}
	return (float64(s[mid-1]) + float64(s[mid])) / 2
}
