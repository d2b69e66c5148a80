//go:build linux

package proctree

import "testing"

func TestParseStat(t *testing.T) {
	line := "4242 (a) b (c) d) S 1 4242 4200 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stat{Pid: 4242, PPid: 1, Pgid: 4242, Sid: 4200, State: 'S', Start: 987654}); s != want {
		t.Errorf("parseStat = %+v; want %+v", s, want)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S a 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"} {
		if _, err := parseStat(1, []byte(bad)); err == nil {
			t.Errorf("parseStat(%q) did not fail", bad)
		}
	}
}
