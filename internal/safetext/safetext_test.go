package safetext_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmre/vmre/internal/safetext"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"x\xff", `x\xff`},
		{"bad\xffname", `bad\xffname`},
		{"\xc3", `\xc3`},                 // a sequence cut short
		{"\xc3\xa9t\xe9", `ét\xe9`},      // Latin-1 after UTF-8
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // a surrogate is not UTF-8
		{"esc\x1b[31m", "esc\x1b[31m"},   // valid UTF-8: controls are Terminal's
		{"\ufffd", "\ufffd"},             // a real replacement character stays
	} {
		if got := safetext.Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestTerminal(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain text, ünïcode 日本", "plain text, ünïcode 日本"},
		{"\tat main.go:12", "\tat main.go:12"},
		{"esc\x1b[31mRED", `esc\x1b[31mRED`},
		{"evil\nfake", `evil\nfake`},
		{"\x1b]0;PWNED\x07\x1b[2J", `\x1b]0;PWNED\a\x1b[2J`},
		{"cr\rover", `cr\rover`},
		{"\b\f\v\x00\x7f", `\b\f\v\x00\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"iso\u2066late\u2069", `iso\u2066late\u2069`},
		{"line\u2028sep", `line\u2028sep`},
		{"x\xff", `x\xff`},
		{"emoji 👩\u200d💻", "emoji 👩\u200d💻"}, // a zero-width joiner is no control
	} {
		got := safetext.Terminal(tc.in)
		if got != tc.want {
			t.Errorf("Terminal(%q) = %q; want %q", tc.in, got, tc.want)
		}
		if safetext.Printable(tc.in) != (got == tc.in) {
			t.Errorf("Printable(%q) = %v; Terminal changed it: %v", tc.in, safetext.Printable(tc.in), got != tc.in)
		}
	}
}

// TestEscapesAsTheTextLog checks that an escape reads as the node's text
// log (log/slog's TextHandler) writes the same byte.
func TestEscapesAsTheTextLog(t *testing.T) {
	for c := 0; c < 256; c++ {
		if c == '"' || c == '\\' || c == '\t' || c >= 0x20 && c <= 0x7f {
			continue // not escaped by Terminal, or quoted by the log; the log keeps DEL, Terminal escapes it as strconv does
		}
		in := "a" + string([]byte{byte(c)}) + "b"
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Log(context.Background(), slog.LevelInfo, in)
		_, logged, ok := strings.Cut(strings.TrimSpace(buf.String()), "msg=")
		if !ok {
			t.Fatalf("no msg in %q", buf.String())
		}
		if want := strings.Trim(logged, `"`); safetext.Terminal(in) != want {
			t.Errorf("Terminal(%q) = %q; the text log writes %q", in, safetext.Terminal(in), want)
		}
		if utf8.ValidString(in) {
			continue
		}
		if want := strings.Trim(logged, `"`); safetext.Valid(in) != want {
			t.Errorf("Valid(%q) = %q; the text log writes %q", in, safetext.Valid(in), want)
		}
	}
}

func TestNoCopyWhenClean(t *testing.T) {
	s := strings.Repeat("clean text ", 10)
	if n := testing.AllocsPerRun(100, func() { _ = safetext.Valid(s); _ = safetext.Terminal(s) }); n != 0 {
		t.Errorf("%v allocations for text that needs no escape; want 0", n)
	}
}

// FuzzText checks both functions on arbitrary bytes: their text is valid
// UTF-8, Terminal's holds nothing a terminal acts on, text that needs no
// escape comes back unchanged, and every escape is one strconv.Quote
// writes for the same character.
func FuzzText(f *testing.F) {
	for _, s := range []string{"", "plain", "x\xff\n", "\x1b]0;PWNED\x07\x1b[2J", "\u202e\u009b\t", "\xf0\x9f\x98"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, term := safetext.Valid(s), safetext.Terminal(s)
		if !utf8.ValidString(v) || !utf8.ValidString(term) {
			t.Fatalf("Valid(%q) = %q, Terminal = %q: not valid UTF-8", s, v, term)
		}
		if (v == s) != utf8.ValidString(s) {
			t.Fatalf("Valid(%q) = %q: changed valid text, or kept invalid text", s, v)
		}
		for _, r := range term {
			if r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == 0x2028 || r == 0x2029 ||
				r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
				t.Fatalf("Terminal(%q) = %q: holds %U", s, term, r)
			}
		}
		if safetext.Printable(s) != (term == s) {
			t.Fatalf("Printable(%q) = %v, but Terminal gives %q", s, safetext.Printable(s), term)
		}
		// Each unit of s comes out as itself or as strconv's escape of it.
		rest := term
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			unit := s[i : i+n]
			if strings.HasPrefix(rest, unit) && (r != utf8.RuneError || n > 1) {
				rest = rest[len(unit):]
			} else {
				esc := strings.Trim(strconv.Quote(unit), `"`)
				if !strings.HasPrefix(rest, esc) {
					t.Fatalf("Terminal(%q) = %q: %q at byte %d is neither kept nor written %s", s, term, unit, i, esc)
				}
				rest = rest[len(esc):]
			}
			i += n
		}
		if rest != "" {
			t.Fatalf("Terminal(%q) = %q: %q left over", s, term, rest)
		}
	})
}
