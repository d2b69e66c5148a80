package ratelog

import (
	"testing"
	"time"
)

func TestLimiterLimitsAndCounts(t *testing.T) {
	t.Parallel()
	var r Limiter
	start := time.Unix(1000, 0)
	for i := range Burst {
		if ok, dropped := r.allow(start.Add(time.Duration(i) * time.Millisecond)); !ok || dropped != 0 {
			t.Fatalf("refusal %d: allowed %v, dropped %d", i, ok, dropped)
		}
	}
	for i := range 25 {
		if ok, _ := r.allow(start.Add(500 * time.Millisecond)); ok {
			t.Fatalf("refusal %d past the burst was allowed", Burst+i)
		}
	}
	ok, dropped := r.allow(start.Add(time.Second))
	if !ok || dropped != 25 {
		t.Fatalf("next second: allowed %v, dropped %d; want true, 25", ok, dropped)
	}
	if ok, dropped := r.allow(start.Add(time.Second + time.Millisecond)); !ok || dropped != 0 {
		t.Fatalf("the count was reported twice: allowed %v, dropped %d", ok, dropped)
	}
}
