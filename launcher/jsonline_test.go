package launcher

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseJSONLine checks the JSON log parser against encoding/json. A
// line is taken apart exactly when it is one whole JSON object whose first
// level field is a string or a number and whose first message field is a
// string; then the level, the message and every other field, in order and
// with its value, are what encoding/json reads from the line. Otherwise a
// logPipe logs the line whole, as text.
func FuzzParseJSONLine(f *testing.F) {
	for _, seed := range []string{
		`{"time":"2024-01-01T00:00:00Z","level":"WARN","msg":"disk almost full","free_mb":12}`,
		`{"level":"warn","ts":1700000000.1,"msg":"zap style","k":"v"}`,
		`{"@level":"error","@message":"hclog style","@timestamp":"2024-01-01T00:00:00Z"}`,
		`{"level":30,"time":1700000000000,"pid":7,"hostname":"h","msg":"pino style"}`,
		`{"level":10,"msg":"pino trace"}`,
		`{"level":35.5,"msg":"custom pino level"}`,
		`{"level":"TRACE","msg":"hclog trace"}`,
		`{"level":"notice","msg":"unknown name"}`,
		`{"level":"ERROR+2","msg":"nested","a":{"b":[1,2,{"c":null}]},"t":true,"f":false,"n":null}`,
		`{"level":"info","msg":"numbers","i":-0,"u":18446744073709551615,"big":1e400,"x":1.5e-3,"long":123456789012345678901234567890}`,
		`{"level":"info","msg":"esc\u00e9\n\"q\"","k\u0065y":"\ud83d\ude00","bad":"\ud800"}`,
		"{\"level\":\"info\",\"msg\":\"not utf-8: \xff\",\"\xfe\":1}",
		`{"le\u0076el":"warn","msg":"escaped key"}`,
		`{"level":"info","msg":"a"}{"level":"error","msg":"b"}`,
		`{"level":"info","msg":"a"} trailing`,
		` {"level":"info","msg":"spaces"}` + "\t ",
		`{"level":"info","msg":"dup","level":"error","msg":"again","message":"third"}`,
		`{"level":true,"msg":"a"}`,
		`{"level":"info","msg":1}`,
		`{"level":null,"msg":"a"}`,
		`{"level":"info","msg":null}`,
		`{"msg":"no level"}`,
		`{"level":"info","msg":"bad number","n":01}`,
		`{"level":"info","msg":"bad nested","a":[1,}`,
		`{"level":"info","msg":"control` + "\x01" + `"}`,
		`{}`,
		`["not","an","object"]`,
		`{`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, ok := parseJSONLine(line)
		want, wantOK := referenceJSONLine(t, line)
		if ok != wantOK {
			t.Fatalf("parseJSONLine(%q) ok = %v; encoding/json says %v", line, ok, wantOK)
		}
		if ok {
			if rec.level != want.level || rec.msg != want.msg {
				t.Fatalf("parseJSONLine(%q) = %v %q; want %v %q", line, rec.level, rec.msg, want.level, want.msg)
			}
			if len(rec.attrs) != len(want.attrs) {
				t.Fatalf("parseJSONLine(%q) has %d attributes %v; want %d", line, len(rec.attrs), rec.attrs, len(want.attrs))
			}
			for i, a := range rec.attrs {
				if w := want.attrs[i]; a.Key != w.key || !sameValue(t, a.Value, w.raw) {
					t.Fatalf("parseJSONLine(%q): attribute %d is %s=%v (%v); want %s=%s", line, i, a.Key, a.Value, a.Value.Kind(), w.key, w.raw)
				}
			}
		}

		// Through a logPipe, a line of one piece that is not a record is
		// logged whole, as text.
		if len(line) == 0 || line[0] != '{' || bytes.ContainsAny(line, "\n\r") || len(line) >= MaxLineBytes {
			return
		}
		h := &pipeCapture{}
		(&logPipe{log: slog.New(h)}).run(bytes.NewReader(line))
		if len(h.records) != 1 {
			t.Fatalf("%d records for the line %q", len(h.records), line)
		}
		if got := h.records[0]; !ok && (got.msg != string(line) || got.level != slog.LevelInfo) {
			t.Fatalf("line %q logged as %v %q; want it whole at INFO", line, got.level, got.msg)
		} else if ok && (got.msg != rec.msg || got.level != rec.level) {
			t.Fatalf("line %q logged as %v %q; want %v %q", line, got.level, got.msg, rec.level, rec.msg)
		}
	})
}

// referenceRecord is what encoding/json reads from a JSON log line.
type referenceRecord struct {
	level slog.Level
	msg   string
	attrs []referenceAttr
}

type referenceAttr struct {
	key string
	raw json.RawMessage // the value's JSON text; vm_level's is a JSON string
}

// referenceJSONLine takes a line apart with encoding/json and the level
// mapping of docs/ARCHITECTURE.md.
func referenceJSONLine(t *testing.T, line []byte) (referenceRecord, bool) {
	t.Helper()
	if !json.Valid(line) || !bytes.HasPrefix(bytes.TrimLeft(line, " \t\r\n"), []byte("{")) {
		return referenceRecord{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("encoding/json: valid %q: %v", line, err)
	}
	var fields []referenceAttr
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("encoding/json: valid %q: %v", line, err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("encoding/json: valid %q: %v", line, err)
		}
		fields = append(fields, referenceAttr{tok.(string), raw})
	}
	levelAt := slices.IndexFunc(fields, func(a referenceAttr) bool { return slices.Contains(levelKeys, a.key) })
	msgAt := slices.IndexFunc(fields, func(a referenceAttr) bool { return slices.Contains(msgKeys, a.key) })
	if levelAt < 0 || msgAt < 0 {
		return referenceRecord{}, false
	}
	var rec referenceRecord
	// (Unmarshal reads null into a string without an error.)
	if fields[msgAt].raw[0] != '"' || json.Unmarshal(fields[msgAt].raw, &rec.msg) != nil {
		return referenceRecord{}, false // not a string
	}
	var vmLevel string
	var name string
	var number json.Number
	levelRaw := fields[levelAt].raw
	switch {
	case levelRaw[0] == '"' && json.Unmarshal(levelRaw, &name) == nil:
		rec.level, vmLevel = referenceLevel(name)
	case (levelRaw[0] == '-' || '0' <= levelRaw[0] && levelRaw[0] <= '9') && json.Unmarshal(levelRaw, &number) == nil:
		rec.level, vmLevel = referenceNumericLevel(number)
	default:
		return referenceRecord{}, false
	}
	if vmLevel != "" {
		raw, _ := json.Marshal(vmLevel)
		rec.attrs = append(rec.attrs, referenceAttr{vmLevelKey, raw})
	}
	for i, a := range fields {
		if i != levelAt && i != msgAt && !slices.Contains(timeKeys, a.key) {
			rec.attrs = append(rec.attrs, a)
		}
	}
	return rec, true
}

// referenceLevel is the table of docs/ARCHITECTURE.md: the level of a name
// and, when the level does not say all of it, the name to keep.
func referenceLevel(name string) (slog.Level, string) {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug, ""
	case "info":
		return slog.LevelInfo, ""
	case "warn", "warning":
		return slog.LevelWarn, ""
	case "error":
		return slog.LevelError, ""
	case "trace":
		return slog.LevelDebug, name
	case "fatal", "panic", "dpanic", "critical", "crit", "alert", "emerg", "emergency":
		return slog.LevelError, name
	}
	var l slog.Level
	if l.UnmarshalText([]byte(name)) == nil {
		return l, ""
	}
	return slog.LevelInfo, name
}

// referenceNumericLevel is pino's scale, as docs/ARCHITECTURE.md maps it.
func referenceNumericLevel(n json.Number) (slog.Level, string) {
	x, err := n.Float64()
	if err != nil {
		x = math.Inf(1)
		if strings.HasPrefix(string(n), "-") {
			x = math.Inf(-1)
		}
	}
	var l slog.Level
	switch {
	case x < 30:
		l = slog.LevelDebug
	case x < 40:
		l = slog.LevelInfo
	case x < 50:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	switch string(n) {
	case "10":
		return l, "trace"
	case "60":
		return l, "fatal"
	case "20", "30", "40", "50":
		return l, ""
	}
	return l, string(n)
}

// sameValue reports whether v holds what encoding/json reads from raw:
// the same string or boolean, null, the same number in the narrowest of
// int64, uint64 and float64 that holds it, or the same object or array,
// as its text.
func sameValue(t *testing.T, v slog.Value, raw json.RawMessage) bool {
	t.Helper()
	switch raw[0] {
	case '"':
		var s string
		json.Unmarshal(raw, &s)
		return v.Kind() == slog.KindString && v.String() == s
	case 't', 'f':
		return v.Kind() == slog.KindBool && v.Bool() == (raw[0] == 't')
	case 'n':
		return v.Kind() == slog.KindAny && v.Any() == nil
	case '{', '[':
		r, ok := v.Any().(rawJSON)
		return ok && string(r) == string(raw)
	}
	text := string(raw)
	integer := !strings.ContainsAny(text, ".eE")
	if n, err := strconv.ParseInt(text, 10, 64); err == nil && integer {
		return v.Kind() == slog.KindInt64 && v.Int64() == n
	}
	if n, err := strconv.ParseUint(text, 10, 64); err == nil && integer {
		return v.Kind() == slog.KindUint64 && v.Uint64() == n
	}
	if x, err := json.Number(text).Float64(); err == nil && !integer {
		return v.Kind() == slog.KindFloat64 && v.Float64() == x
	}
	n, ok := v.Any().(json.Number)
	return ok && string(n) == text
}

// TestJSONLineShapes pins the records of the JSON styles the host reads.
func TestJSONLineShapes(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		level      slog.Level
		msg        string
		attrs      string // the attributes as slog's TextHandler writes them
	}{
		{"slog", `{"time":"2025-01-02T03:04:05Z","level":"WARN","msg":"disk almost full","free_mb":12,"ratio":0.25}`,
			slog.LevelWarn, "disk almost full", "free_mb=12 ratio=0.25"},
		{"slog offset", `{"level":"ERROR+2","msg":"worse"}`, slog.LevelError + 2, "worse", ""},
		{"slog below debug", `{"level":"DEBUG-4","msg":"fine"}`, slog.LevelDebug - 4, "fine", ""},
		{"zap", `{"level":"info","ts":1735787045.5,"caller":"chain/accept.go:142","msg":"block accepted","height":10000000}`,
			slog.LevelInfo, "block accepted", "caller=chain/accept.go:142 height=10000000"},
		{"zap dpanic", `{"level":"dpanic","msg":"odd"}`, slog.LevelError, "odd", "vm_level=dpanic"},
		{"zap fatal", `{"level":"fatal","msg":"bye"}`, slog.LevelError, "bye", "vm_level=fatal"},
		{"hclog", `{"@level":"warn","@message":"slow peer","@module":"p2p","@timestamp":"2025-01-02T03:04:05.000000Z","peer":"n1"}`,
			slog.LevelWarn, "slow peer", "@module=p2p peer=n1"},
		{"hclog trace", `{"@level":"trace","@message":"tick"}`, slog.LevelDebug, "tick", "vm_level=trace"},
		{"pino info", `{"level":30,"time":1700000000000,"pid":7,"hostname":"h","msg":"listening"}`,
			slog.LevelInfo, "listening", "pid=7 hostname=h"},
		{"pino trace", `{"level":10,"msg":"tick"}`, slog.LevelDebug, "tick", "vm_level=trace"},
		{"pino debug", `{"level":20,"msg":"d"}`, slog.LevelDebug, "d", ""},
		{"pino warn", `{"level":40,"msg":"w"}`, slog.LevelWarn, "w", ""},
		{"pino error", `{"level":50,"msg":"e"}`, slog.LevelError, "e", ""},
		{"pino fatal", `{"level":60,"msg":"f"}`, slog.LevelError, "f", "vm_level=fatal"},
		{"pino custom", `{"level":35,"msg":"c"}`, slog.LevelInfo, "c", "vm_level=35"},
		{"unknown name", `{"severity":"notice","message":"n"}`, slog.LevelInfo, "n", "vm_level=notice"},
		{"syslog alert", `{"severity":"ALERT","message":"a"}`, slog.LevelError, "a", "vm_level=ALERT"},
		{"nested", `{"level":"info","msg":"n","a":{"b":[1,2,{"c":null}]},"ok":true,"none":null}`,
			slog.LevelInfo, "n", `a="{\"b\":[1,2,{\"c\":null}]}" ok=true none=<nil>`},
		{"escapes", `{"level":"info","msg":"tab\there","k\u0065y":"caf\u00e9"}`, slog.LevelInfo, "tab\there", "key=café"},
		{"repeated keys", `{"level":"info","msg":"first","level":"error","message":"second"}`,
			slog.LevelInfo, "first", "level=error message=second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, ok := parseJSONLine([]byte(tc.line))
			if !ok {
				t.Fatalf("parseJSONLine(%s) failed", tc.line)
			}
			// The attributes: what TextHandler writes after the level and
			// the message.
			var bare, out bytes.Buffer
			r := slog.NewRecord(time.Time{}, rec.level, rec.msg, 0)
			slog.NewTextHandler(&bare, nil).Handle(t.Context(), r)
			r.AddAttrs(rec.attrs...)
			slog.NewTextHandler(&out, nil).Handle(t.Context(), r)
			attrs := strings.TrimSpace(strings.TrimPrefix(out.String(), strings.TrimSuffix(bare.String(), "\n")))
			if rec.level != tc.level || rec.msg != tc.msg || attrs != tc.attrs {
				t.Errorf("got %v %q [%s]; want %v %q [%s]", rec.level, rec.msg, attrs, tc.level, tc.msg, tc.attrs)
			}
		})
	}
}

// TestJSONLineKeepsJSON checks that slog's JSONHandler writes the fields of
// a VM's line with their JSON types: numbers as numbers, objects and
// arrays as themselves, in their order.
func TestJSONLineKeepsJSON(t *testing.T) {
	line := `{"level":"info","msg":"m","n":12,"x":0.5,"u":18446744073709551615,"big":1e400,"s":"v","a":{"z":1,"b":[true,null,"s"]}}`
	rec, ok := parseJSONLine([]byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	var out bytes.Buffer
	r := slog.NewRecord(time.Time{}, rec.level, rec.msg, 0)
	r.AddAttrs(rec.attrs...)
	slog.NewJSONHandler(&out, nil).Handle(t.Context(), r)
	const want = `"level":"INFO","msg":"m","n":12,"x":0.5,"u":18446744073709551615,"big":1e400,"s":"v","a":{"z":1,"b":[true,null,"s"]}}`
	if got := out.String(); !strings.HasSuffix(strings.TrimSpace(got), want) {
		t.Errorf("JSONHandler wrote %s; want it to end with %s", got, want)
	}
}

// TestNotJSONLogsWhole checks that a line that starts like a JSON object
// but is not one whole JSON log record is logged whole, as text, at INFO.
func TestNotJSONLogsWhole(t *testing.T) {
	for _, line := range []string{
		`{`,
		`{}`,
		`{"level":"info","msg":"a"} trailing`,
		`{"level":"info","msg":"a"}{"level":"error","msg":"b"}`,
		`{"level":"error"}`,
		`{"msg":"no level"}`,
		`{"level":"error","msg":42}`,
		`{"level":["error"],"msg":"m"}`,
		`{"level":"error","msg":"m","n":01}`,
		`{"level":"error","msg":"m","s":"` + "\x7f\x01" + `"}`,
		`{"level":"error","msg":"m","a":[1,2}`,
		`{"level":"error","msg":"m","a":"\x"}`,
		`{"level":"error","msg":"m",}`,
		`{'level':'error','msg':'m'}`,
		`{"level":"error","msg":"m","deep":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`,
	} {
		h := &pipeCapture{}
		(&logPipe{log: slog.New(h)}).run(strings.NewReader(line + "\n"))
		if len(h.records) != 1 || h.records[0].msg != line || h.records[0].level != slog.LevelInfo {
			t.Errorf("%.60q: records %.200v; want the line whole at INFO", line, h.records)
		}
	}
	// encoding/json's depth limit, and one under it.
	deep := `{"level":"error","msg":"m","deep":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`
	if _, ok := parseJSONLine([]byte(deep)); !ok || !json.Valid([]byte(deep)) {
		t.Errorf("a line nested %d deep: parsed %v, valid %v; want both", maxJSONDepth, ok, json.Valid([]byte(deep)))
	}
}

// TestKeyRole checks that keyRole knows the keys of levelKeys, msgKeys and
// timeKeys, and no other.
func TestKeyRole(t *testing.T) {
	for role, keys := range map[int][]string{levelRole: levelKeys, msgRole: msgKeys, timeRole: timeKeys} {
		for _, k := range keys {
			if got := keyRole([]byte(k)); got != role {
				t.Errorf("keyRole(%q) = %d; want %d", k, got, role)
			}
		}
	}
	for _, k := range []string{"", "Level", "msg ", "times", "@time", "levels", "mess"} {
		if got := keyRole([]byte(k)); got != attrRole {
			t.Errorf("keyRole(%q) = %d; want an attribute", k, got)
		}
	}
}

// TestJSONLineAllocs pins the cost of a JSON line before the handler: one
// copy of the line, whose slices are the record's strings.
func TestJSONLineAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocations differ under -cover and -race")
	}
	for _, line := range []string{
		`{"time":"2025-01-02T03:04:05.000001Z","level":"INFO","msg":"block accepted","height":10000001,"hash":"0x01","txs":1001}`,
		`{"level":"info","ts":1735787045.000001,"caller":"chain/accept.go:142","msg":"block accepted","height":10000001,"hash":"0x01","txs":1001}`,
		`{"@level":"info","@message":"block accepted","@module":"vm.chain","@timestamp":"2025-01-02T03:04:05.000001Z","hash":"0x01","height":10000001,"txs":1001}`,
		`{"level":10,"time":1700000000000,"pid":7,"hostname":"h","msg":"tick","ratio":0.5}`,
	} {
		p := &logPipe{log: slog.New(enabledDiscard{})}
		input := strings.Repeat(line+"\n", 64)
		r := strings.NewReader(input)
		allocs := testing.AllocsPerRun(20, func() {
			r.Reset(input)
			p.run(r)
		}) / 64
		// The read buffer of run is one more per run, not per line.
		if allocs > 1.1 {
			t.Errorf("%.40s...: %.2f allocations per line; want 1", line, allocs)
		}
	}
}
