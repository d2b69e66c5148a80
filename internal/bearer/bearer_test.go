package bearer_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmre/vmre/internal/bearer"
)

func TestToken(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		header string
		token  string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		// Spaces around the token are not part of it.
		{"Bearer   abc  ", "abc", true},
		// The token itself keeps its case.
		{"Bearer AbC", "AbC", true},
		// Malformed: no credential, another scheme, no space after the
		// scheme, an empty token.
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer     ", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false},
		{"Basic abc", "", false},
		{"Token abc", "", false},
		{" Bearer abc", "", false},
		{"Bear abc", "", false},
		{"Béarer abc", "", false},
		{"\x00\x00\x00\x00\x00\x00 abc", "", false},
	} {
		token, ok := bearer.Token(c.header)
		if token != c.token || ok != c.ok {
			t.Errorf("Token(%q) = %q, %t; want %q, %t", c.header, token, ok, c.token, c.ok)
		}
	}
}

func TestKeyMatches(t *testing.T) {
	t.Parallel()
	const token = "s3cret-0123456789abcdef"
	key := bearer.KeyOf(token)
	for _, c := range []struct {
		header string
		want   bool
	}{
		{bearer.Header(token), true},
		{"bearer " + token, true},
		{"BEARER  " + token + " ", true},
		{"Bearer " + strings.ToUpper(token), false}, // the token is case-sensitive
		{"Bearer " + token[:len(token)-1], false},   // a prefix
		{"Bearer " + token + "0", false},            // an extension
		{"Bearer " + token + token, false},
		{"Basic " + token, false},
		{token, false},
		{"", false},
		{"Bearer ", false},
	} {
		if got := key.Matches(c.header); got != c.want {
			t.Errorf("Matches(%q) = %t; want %t", c.header, got, c.want)
		}
	}
	// The key of an empty token matches no header: a malformed one is not
	// taken for an empty token.
	empty := bearer.KeyOf("")
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic x"} {
		if empty.Matches(h) {
			t.Errorf("the key of an empty token matches %q", h)
		}
	}
}

// TestKeyIsADigest: what Matches compares is the SHA-256 of the token,
// 32 bytes whatever the token's length, so the time of the comparison
// (subtle.ConstantTimeCompare over equal lengths) cannot depend on how
// much of the token a guess gets right, nor tell its length. The property
// is one of construction; a timed test could not prove it.
func TestKeyIsADigest(t *testing.T) {
	t.Parallel()
	if size := unsafe.Sizeof(bearer.Key{}); size != sha256.Size {
		t.Fatalf("a Key is %d bytes; want %d, a SHA-256", size, sha256.Size)
	}
	for _, token := range []string{"", "a", strings.Repeat("x", 64), strings.Repeat("y", 1<<16)} {
		if bearer.KeyOf(token) != bearer.Key(sha256.Sum256([]byte(token))) {
			t.Errorf("KeyOf a token of %d bytes is not its SHA-256", len(token))
		}
	}
}

func TestHeader(t *testing.T) {
	t.Parallel()
	if got := bearer.Header("tok"); got != "Bearer tok" {
		t.Errorf("Header = %q", got)
	}
	if token, ok := bearer.Token(bearer.Header("tok")); !ok || token != "tok" {
		t.Errorf("Token(Header(tok)) = %q, %t", token, ok)
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer x", "Basic y", "", "Bearer "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearer.Token(header)
		switch {
		case ok && token == "":
			t.Fatalf("Token(%q): ok with an empty token", header)
		case ok && token != strings.TrimSpace(token):
			t.Fatalf("Token(%q) = %q: not trimmed", header, token)
		case ok && !strings.EqualFold(header[:7], "bearer "):
			t.Fatalf("Token(%q) ok without the bearer scheme", header)
		case ok && !bearer.KeyOf(token).Matches(header):
			t.Fatalf("the key of Token(%q) does not match it", header)
		}
	})
}
