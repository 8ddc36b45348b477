package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// writeRedacted writes a message as JSON-like text with the proto field
// names. Bytes fields are never written, only their length: they are
// plaintext, ciphertext, data keys, key material or import tokens. So
// --debug output is safe to paste into an issue.
func writeRedacted(b *strings.Builder, m protoreflect.Message) {
	type field struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var fields []field
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fields = append(fields, field{fd, v})
		return true
	})
	sort.Slice(fields, func(i, j int) bool { return fields[i].fd.Number() < fields[j].fd.Number() })
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q: ", f.fd.JSONName())
		switch {
		case f.fd.IsList():
			l := f.v.List()
			b.WriteByte('[')
			for j := 0; j < l.Len(); j++ {
				if j > 0 {
					b.WriteString(", ")
				}
				writeRedactedValue(b, f.fd, l.Get(j))
			}
			b.WriteByte(']')
		case f.fd.IsMap():
			mp := f.v.Map()
			var keys []string
			vals := map[string]protoreflect.Value{}
			mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				keys = append(keys, k.String())
				vals[k.String()] = v
				return true
			})
			sort.Strings(keys)
			b.WriteByte('{')
			for j, k := range keys {
				if j > 0 {
					b.WriteString(", ")
				}
				kb, _ := json.Marshal(k)
				b.Write(kb)
				b.WriteString(": ")
				writeRedactedValue(b, f.fd.MapValue(), vals[k])
			}
			b.WriteByte('}')
		default:
			writeRedactedValue(b, f.fd, f.v)
		}
	}
	b.WriteByte('}')
}

func writeRedactedValue(b *strings.Builder, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		fmt.Fprintf(b, `"<%d bytes, not shown>"`, len(v.Bytes()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		writeRedacted(b, v.Message())
	case protoreflect.StringKind:
		sb, _ := json.Marshal(v.String())
		b.Write(sb)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			fmt.Fprintf(b, "%q", ev.Name())
		} else {
			fmt.Fprint(b, v.Enum())
		}
	default:
		fmt.Fprint(b, v.Interface())
	}
}
