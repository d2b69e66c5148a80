package vmpeer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// enumJSON is the Connect JSON codec of ConnectJSON. It reads an enum value
// by its name as the .proto file spells it and also with or without the
// enum's name as a prefix: grpc.health.v1 is SERVING in gRPC's health.proto
// and SERVING_STATUS_SERVING in connect-go's copy of it, and a VM written by
// hand may send either (or the number, 1).
type enumJSON struct{}

func (enumJSON) Name() string { return "json" }

func (enumJSON) Marshal(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", msg)
	}
	return protojson.Marshal(m)
}

func (enumJSON) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", msg)
	}
	if len(data) == 0 {
		data = []byte("{}")
	}
	// protojson drops an enum name it does not know when told to discard
	// unknown fields, as a Connect client must: respell first.
	var v any
	if json.Unmarshal(data, &v) == nil && respellEnums(v, m.ProtoReflect().Descriptor()) {
		if fixed, err := json.Marshal(v); err == nil {
			data = fixed
		}
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}

// respellEnums rewrites, in v, the JSON of a message md, every enum name
// that md's enum spells otherwise, and reports whether it changed any.
func respellEnums(v any, md protoreflect.MessageDescriptor) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		var c bool
		switch {
		case fd == nil:
		case fd.IsList():
			list, _ := val.([]any)
			for i := range list {
				list[i], c = respellValue(list[i], fd)
				changed = changed || c
			}
		case fd.IsMap():
			entries, _ := val.(map[string]any)
			for k := range entries {
				entries[k], c = respellValue(entries[k], fd.MapValue())
				changed = changed || c
			}
		default:
			obj[key], c = respellValue(val, fd)
			changed = changed || c
		}
	}
	return changed
}

// respellValue respells the JSON value x of one field (or element) fd.
func respellValue(x any, fd protoreflect.FieldDescriptor) (any, bool) {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if s, ok := x.(string); ok {
			if name, ok := respell(s, fd.Enum()); ok {
				return name, true
			}
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return x, respellEnums(x, fd.Message())
	}
	return x, false
}

// respell finds the value of ed that s names, with or without the enum's
// name in UPPER_SNAKE_CASE as a prefix.
func respell(s string, ed protoreflect.EnumDescriptor) (string, bool) {
	if ed.Values().ByName(protoreflect.Name(s)) != nil {
		return "", false
	}
	prefix := upperSnake(string(ed.Name())) + "_"
	if name := prefix + s; ed.Values().ByName(protoreflect.Name(name)) != nil {
		return name, true
	}
	if name, ok := strings.CutPrefix(s, prefix); ok && ed.Values().ByName(protoreflect.Name(name)) != nil {
		return name, true
	}
	return "", false
}

// upperSnake turns ServingStatus into SERVING_STATUS.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
