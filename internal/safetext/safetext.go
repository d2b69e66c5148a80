// Package safetext turns bytes that come from outside the node (a plugin's
// file name, a line of a VM's output) into text every place it goes
// accepts: valid UTF-8 for protobuf strings, Prometheus label values and
// JSON (Valid), and text without control characters for a terminal
// (Terminal).
//
// Both escape a byte the way the node's own text log does (log/slog's
// TextHandler quotes with strconv): a byte that is not part of valid UTF-8
// becomes \xff, an escape character \x1b, a newline \n. Text that needs no
// escape is returned as it is, without a copy. A backslash is not escaped:
// the escaped text is for reading, not for decoding back into bytes.
package safetext

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Valid returns s with every byte that is not part of valid UTF-8 written
// as \xNN (two lower-case hex digits). Valid UTF-8 comes back unchanged.
func Valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			appendByte(&b, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Terminal returns s ready to be written to a terminal, as journalctl and
// ls make names and messages safe to show: every control character is
// escaped (C0 but the tab, DEL, C1: \n, \r, \a, \b, \f, \v, \x1b, \x7f,
// \u009b), and so are the Unicode line separators and the bidirectional
// overrides and isolates, which reorder what follows them on the screen
// (\u2028, \u202e), and bytes that are not valid UTF-8 (\xff). A tab is
// kept: Go's stack traces indent with it. Text that needs none of this
// comes back unchanged.
func Terminal(s string) string {
	i := printable(s)
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\t' || c >= 0x20 && c != 0x7f:
				b.WriteByte(c)
			case c == '\a':
				b.WriteString(`\a`)
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\f':
				b.WriteString(`\f`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\v':
				b.WriteString(`\v`)
			default:
				appendByte(&b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			appendByte(&b, c)
		case hidden(r):
			b.WriteString(`\u`)
			h := strconv.FormatInt(int64(r), 16)
			b.WriteString("0000"[len(h):])
			b.WriteString(h)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Printable reports whether s is valid UTF-8 that Terminal leaves as it
// is: it holds no control character but tabs, no line separator and no
// bidirectional control.
func Printable(s string) bool { return printable(s) == len(s) }

// printable returns the length of the longest prefix of s that Terminal
// leaves as it is.
func printable(s string) int {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || hidden(r) {
			return i
		}
		i += n
	}
	return i
}

// hidden reports whether the rune r, beyond ASCII, is one a terminal acts
// on instead of showing: a C1 control, a line or paragraph separator, a
// bidirectional embedding, override or isolate.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendByte writes c as \xNN.
func appendByte(b *strings.Builder, c byte) {
	b.WriteString(`\x`)
	b.WriteByte(hexDigits[c>>4])
	b.WriteByte(hexDigits[c&0xf])
}
