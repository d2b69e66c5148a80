package launcher

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// The checks of JSON text under jsonParser: each reads one value, or a
// part of one, at b[i] and returns the index after it, and false when b
// is not valid JSON there, as encoding/json would find it.

// maxJSONDepth is encoding/json's limit of nested objects and arrays: a
// line nested deeper is not valid JSON to it, nor to the parser.
const maxJSONDepth = 10000

// skipNested checks the object or array at b[i], nested in the line's
// object, and returns the index after it. It keeps its open objects and
// arrays in p.stack rather than recurse: a line may nest thousands deep.
func (p *jsonParser) skipNested(b []byte, i int) (int, bool) {
	stack := p.stack[:0]
	defer func() { p.stack = stack[:0] }()
	var ok bool
	for {
		// A value starts at b[i].
		switch c := at(b, i); c {
		case '{', '[':
			if len(stack)+2 > maxJSONDepth { // with the line's own object
				return 0, false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if end := at(b, i); c == '{' && end == '}' || c == '[' && end == ']' {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				if i, ok = skipKey(b, i); !ok {
					return 0, false
				}
			}
			continue
		case '"':
			if i, _, ok = scanString(b, i); !ok {
				return 0, false
			}
		case 't':
			if i, ok = literal(b, i, "true"); !ok {
				return 0, false
			}
		case 'f':
			if i, ok = literal(b, i, "false"); !ok {
				return 0, false
			}
		case 'n':
			if i, ok = literal(b, i, "null"); !ok {
				return 0, false
			}
		default:
			if i, _, ok = scanNumber(b, i); !ok {
				return 0, false
			}
		}
		// A value ended before b[i]: close what it ends, up to the next
		// value.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			c, open := at(b, i), stack[len(stack)-1]
			if c == ',' {
				i = skipSpace(b, i+1)
				if open == '{' {
					if i, ok = skipKey(b, i); !ok {
						return 0, false
					}
				}
				break
			}
			if c == '}' && open == '{' || c == ']' && open == '[' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return 0, false
		}
	}
}

// at is b[i], or 0 past the end: 0 is valid nowhere in JSON outside a
// string, so a scan that reaches the end fails where it expects more.
func at(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func literal(b []byte, i int, word string) (int, bool) {
	if len(b)-i >= len(word) && string(b[i:i+len(word)]) == word {
		return i + len(word), true
	}
	return 0, false
}

// skipKey checks a key and its colon at b[i], and returns the index of the
// value.
func skipKey(b []byte, i int) (int, bool) {
	if at(b, i) != '"' {
		return 0, false
	}
	i, _, ok := scanString(b, i)
	if !ok {
		return 0, false
	}
	if i = skipSpace(b, i); at(b, i) != ':' {
		return 0, false
	}
	return skipSpace(b, i+1), true
}

// stringStop marks the bytes a string's scan stops at: its end, an escape,
// and the control characters, which JSON does not allow in a string.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// scanString checks the string whose quote is at b[i], and returns the
// index after its closing quote and whether its bytes are the string: no
// escape, valid UTF-8.
func scanString(b []byte, i int) (end int, plain, ok bool) {
	start := i + 1
	plain = true
	var high uint64 // the OR of the bytes: a top bit says non-ASCII
	for i = start; ; {
		// Eight bytes at a time, up to the first that stops the scan: the
		// lowest byte the masks mark is a true one (the false ones are
		// above it).
		for len(b)-i >= 8 {
			x := binary.LittleEndian.Uint64(b[i:])
			stop := hasZeroByte(x^(ones*'"')) | hasZeroByte(x^(ones*'\\')) | hasByteBelow(x, 0x20)
			if stop == 0 {
				high |= x
				i += 8
				continue
			}
			// The bits below the lowest mark: the bytes before the stop,
			// and the stop's own low bits, which say nothing of non-ASCII.
			high |= x & (stop&-stop - 1)
			i += bits.TrailingZeros64(stop) / 8
			break
		}
		if len(b)-i < 8 {
			for i < len(b) && !stringStop[b[i]] {
				high |= uint64(b[i])
				i++
			}
		}
		if i >= len(b) {
			return 0, false, false
		}
		switch b[i] {
		case '"':
			if plain && high&(ones*0x80) != 0 {
				plain = utf8.Valid(b[start:i])
			}
			return i + 1, plain, true
		case '\\':
			plain = false
			switch at(b, i+1) {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, false, false
				}
				i += 6
			default:
				return 0, false, false
			}
		default:
			return 0, false, false // a control character
		}
	}
}

// ones has a 1 in each byte: ones*c has c in each.
const ones = 0x0101010101010101

// hasZeroByte is not 0 when a byte of x is 0.
func hasZeroByte(x uint64) uint64 { return (x - ones) &^ x & (ones * 0x80) }

// hasByteBelow is not 0 when a byte of x is below n, for n <= 0x80.
func hasByteBelow(x uint64, n byte) uint64 { return (x - ones*uint64(n)) &^ x & (ones * 0x80) }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanNumber checks the number at b[i], and returns the index after it and
// whether it is an integer: no fraction, no exponent.
func scanNumber(b []byte, i int) (end int, integer, ok bool) {
	if at(b, i) == '-' {
		i++
	}
	switch c := at(b, i); {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		i = digits(b, i+1)
	default:
		return 0, false, false
	}
	integer = true
	if at(b, i) == '.' {
		if !isDigit(at(b, i+1)) {
			return 0, false, false
		}
		i, integer = digits(b, i+1), false
	}
	if c := at(b, i); c == 'e' || c == 'E' {
		i++
		if c := at(b, i); c == '+' || c == '-' {
			i++
		}
		if !isDigit(at(b, i)) {
			return 0, false, false
		}
		i, integer = digits(b, i), false
	}
	return i, integer, true
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
