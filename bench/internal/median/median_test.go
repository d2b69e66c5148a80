package median

import (
	"slices"
	"testing"
	"time"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		// An even count: the mean of the two middle values, not either.
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 20}, 15},
	} {
		in := slices.Clone(tc.in)
		if got := Of(in); got != tc.want {
			t.Errorf("Of(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Of(%v) reordered its argument to %v", tc.in, in)
		}
	}
	if got := Of([]time.Duration{3 * time.Millisecond, time.Millisecond}); got != float64(2*time.Millisecond) {
		t.Errorf("Of(3ms, 1ms) = %v ns, want 2e6", got)
	}
}
