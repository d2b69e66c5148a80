package launcher

import (
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
)

// Keys of the level, message and time in the JSON styles of slog, zap,
// hclog and pino. The VM's time is dropped: the host stamps its own.
var (
	levelKeys = []string{"level", "@level", "lvl", "severity"}
	msgKeys   = []string{"msg", "@message", "message"}
	timeKeys  = []string{"time", "ts", "@timestamp", "timestamp"}
)

// vmLevelKey is the attribute that keeps the level a VM wrote when the
// record's level says it only in part: "trace" logged at DEBUG, "fatal" at
// ERROR, a name the host does not know at INFO. See docs/ARCHITECTURE.md.
const vmLevelKey = "vm_level"

// jsonParser takes apart a JSON log line: one object with a level and a
// message. It reads the line once, checking all of it as encoding/json
// would, and notes where each top-level field is, decoding nothing; the
// record's strings are then slices of one copy of the line. A line costs
// that one allocation, and one more for each string with an escape and
// each object or array among its fields. Its slices are reused from line
// to line.
type jsonParser struct {
	fields []jsonField
	stack  []byte // the open objects and arrays of a nested value

	level    slog.Level
	levelAt  int    // index in fields of the level, -1 when none
	msgAt    int    // index in fields of the message, -1 when none
	vmLevel  string // the VM's level name to keep as vmLevelKey, if a constant
	keepText bool   // keep the level field's own text as vmLevelKey
}

// jsonField is where a top-level field of the line is: the key and, for a
// string, the value are between the quotes.
type jsonField struct {
	keyStart, keyEnd int32
	valStart, valEnd int32
	kind             byte // the value's first byte: '"', '{', '[', 't', 'f', 'n', or '0' for any number
	keyPlain         bool // the key's bytes are the key: no escape, valid UTF-8
	valPlain         bool // the same, for a string value
	integer          bool // a number without fraction or exponent
	skip             bool // the level, the message or a time: not an attribute
}

// jsonRecord is a structured log line of a VM.
type jsonRecord struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// parseJSONLine takes apart a JSON line with a level and a message: other
// fields become attributes, in their order.
func parseJSONLine(line []byte) (jsonRecord, bool) {
	var p jsonParser
	if !p.parse(line) {
		return jsonRecord{}, false
	}
	msg, attrs := p.record(string(line), nil)
	return jsonRecord{level: p.level, msg: msg, attrs: attrs}, true
}

// parse reports whether line is one JSON object, with only white space
// around it, whose first level field ("level", "@level", ...) is a string
// or a number and whose first message field is a string. It sets p.level
// and notes the fields for record.
func (p *jsonParser) parse(line []byte) bool {
	if len(line) > math.MaxInt32 {
		return false // more than a jsonField holds; logPipe's lines are capped far below
	}
	p.fields = p.fields[:0]
	p.levelAt, p.msgAt = -1, -1
	b := line
	i := skipSpace(b, 0)
	if at(b, i) != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if at(b, i) == '}' {
		return false // no level, no message
	}
	for {
		if at(b, i) != '"' {
			return false
		}
		p.fields = append(p.fields, jsonField{})
		f := &p.fields[len(p.fields)-1]
		var ok bool
		f.keyStart = int32(i + 1)
		if i, f.keyPlain, ok = scanString(b, i); !ok {
			return false
		}
		f.keyEnd = int32(i - 1)
		key := line[f.keyStart:f.keyEnd]
		if !f.keyPlain {
			key = []byte(unquote(line[f.keyStart-1 : f.keyEnd+1]))
		}
		switch keyRole(key) {
		case levelRole:
			if p.levelAt < 0 {
				p.levelAt, f.skip = len(p.fields)-1, true
			}
		case msgRole:
			if p.msgAt < 0 {
				p.msgAt, f.skip = len(p.fields)-1, true
			}
		case timeRole:
			f.skip = true
		}
		if i = skipSpace(b, i); at(b, i) != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		switch f.kind = at(b, i); f.kind {
		case '"':
			f.valStart = int32(i + 1)
			i, f.valPlain, ok = scanString(b, i)
			f.valEnd = int32(i - 1)
		case '{', '[':
			f.valStart = int32(i)
			i, ok = p.skipNested(b, i)
			f.valEnd = int32(i)
		case 't':
			i, ok = literal(b, i, "true")
		case 'f':
			i, ok = literal(b, i, "false")
		case 'n':
			i, ok = literal(b, i, "null")
		default:
			f.valStart = int32(i)
			i, f.integer, ok = scanNumber(b, i)
			f.kind, f.valEnd = '0', int32(i)
		}
		if !ok {
			return false
		}
		i = skipSpace(b, i)
		if c := at(b, i); c == '}' {
			i++
			break
		} else if c != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
	if skipSpace(b, i) != len(b) {
		return false // more after the object: it would be lost
	}
	if p.levelAt < 0 || p.msgAt < 0 || p.fields[p.msgAt].kind != '"' {
		return false
	}
	return p.levelOf(line)
}

// levelOf sets p.level from the level field, a string or a number.
func (p *jsonParser) levelOf(line []byte) bool {
	lf := &p.fields[p.levelAt]
	p.vmLevel, p.keepText = "", false
	switch lf.kind {
	case '"':
		name := line[lf.valStart:lf.valEnd]
		if !lf.valPlain {
			name = []byte(unquote(line[lf.valStart-1 : lf.valEnd+1]))
		}
		var exact bool
		if p.level, exact = parseLevel(name); !exact && len(name) > 0 {
			// The name as written: a slice of the line, or decoded.
			if lf.valPlain {
				p.keepText = true
			} else {
				p.vmLevel = string(name)
			}
		}
	case '0':
		p.level, p.vmLevel, p.keepText = numericLevel(line[lf.valStart:lf.valEnd])
	default:
		return false
	}
	return true
}

// record returns the message and appends the attributes of the line that
// parse accepted to attrs. s is the line as a string: the strings of the
// record are slices of it.
func (p *jsonParser) record(s string, attrs []slog.Attr) (string, []slog.Attr) {
	switch lf := &p.fields[p.levelAt]; {
	case p.keepText:
		attrs = append(attrs, slog.String(vmLevelKey, s[lf.valStart:lf.valEnd]))
	case p.vmLevel != "":
		attrs = append(attrs, slog.String(vmLevelKey, p.vmLevel))
	}
	for k := range p.fields {
		f := &p.fields[k]
		if f.skip {
			continue
		}
		key := s[f.keyStart:f.keyEnd]
		if !f.keyPlain {
			key = unquote(s[f.keyStart-1 : f.keyEnd+1])
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: f.slogValue(s)})
	}
	return p.fields[p.msgAt].str(s), attrs
}

// slogValue is the value of f as slog holds it: strings, booleans and null
// as themselves, numbers as int64, uint64 or float64 (json.Number when
// none holds them), objects and arrays as their JSON text.
func (f *jsonField) slogValue(s string) slog.Value {
	text := s[f.valStart:f.valEnd]
	switch f.kind {
	case '"':
		return slog.StringValue(f.str(s))
	case 't':
		return slog.BoolValue(true)
	case 'f':
		return slog.BoolValue(false)
	case 'n':
		return slog.AnyValue(nil)
	case '{', '[':
		return slog.AnyValue(rawJSON(text))
	}
	if f.integer {
		if n, ok := smallInt(text); ok {
			return slog.Int64Value(n)
		}
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return slog.Int64Value(n)
		}
		if n, err := strconv.ParseUint(text, 10, 64); err == nil {
			return slog.Uint64Value(n)
		}
	} else if x, err := strconv.ParseFloat(text, 64); err == nil {
		return slog.Float64Value(x)
	}
	return slog.AnyValue(json.Number(text))
}

// smallInt reads a JSON integer of at most 18 digits, which int64 holds,
// faster than strconv, which checks for more than JSON allows.
func smallInt(text string) (int64, bool) {
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(text); i++ {
		n = n*10 + int64(text[i]-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// str is the string value of f.
func (f *jsonField) str(s string) string {
	if f.valPlain {
		return s[f.valStart:f.valEnd]
	}
	return unquote(s[f.valStart-1 : f.valEnd+1])
}

// rawJSON is an object or an array of a VM's JSON line, kept as its text:
// slog's JSONHandler writes it as JSON, its TextHandler as that text.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }
func (r rawJSON) MarshalText() ([]byte, error) { return []byte(r), nil }

// unquote decodes a JSON string that has escapes or bytes that are not
// UTF-8, as encoding/json does. The parser has checked it.
func unquote[T []byte | string](quoted T) string {
	var s string
	json.Unmarshal([]byte(quoted), &s)
	return s
}

// Roles of a top-level key.
const (
	attrRole = iota
	levelRole
	msgRole
	timeRole
)

// keyRole says whether key is one of levelKeys, msgKeys or timeKeys.
func keyRole(key []byte) int {
	// A switch, not a search of the lists: it is as fast for a key that is
	// none, as most are. TestKeyRole checks that both agree.
	switch string(key) {
	case "level", "@level", "lvl", "severity":
		return levelRole
	case "msg", "@message", "message":
		return msgRole
	case "time", "ts", "@timestamp", "timestamp":
		return timeRole
	}
	return attrRole
}
