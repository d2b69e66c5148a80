package server

import "testing"

func TestSameEndpoint(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"127.0.0.1:80", "0.0.0.0:80", true},
		{"[::1]:80", "[::]:80", true},
		{"[::ffff:127.0.0.1]:80", "127.0.0.1:80", true},
		{"localhost:80", "127.0.0.1:80", true},
		{"localhost:80", "[::1]:80", true},
		{"127.0.0.1:80", "localhost:80", true},
		{"localhost:80", "10.0.0.1:80", false},
		{"localhost:80", "0.0.0.0:80", true},
		{"example.com:80", "example.com:80", true},
		{"example.com:80", "127.0.0.1:80", false},
		{"junk", "junk", true},
		{"junk", "127.0.0.1:80", false},
	} {
		if got := sameEndpoint(tc.a, tc.b); got != tc.want {
			t.Errorf("sameEndpoint(%q, %q) = %v; want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
