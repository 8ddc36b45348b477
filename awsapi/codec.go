package awsapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The API messages of raftkms mirror AWS KMS's shapes field for field, in
// snake case (key_id ↔ KeyId), so one translation serves every operation:
// JSON member names are the fields' names in Pascal case, blobs are base64,
// timestamps are epoch seconds (JSON numbers), maps are JSON objects.

// awsNames are the members whose AWS name is not the plain Pascal case of
// the field name.
var awsNames = map[protoreflect.Name]string{
	"aws_account_id": "AWSAccountId",
}

var timestampName = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()

// awsName is a field's JSON member name on the AWS protocol.
func awsName(fd protoreflect.FieldDescriptor) string {
	if n, ok := awsNames[fd.Name()]; ok {
		return n
	}
	var b strings.Builder
	for _, part := range strings.Split(string(fd.Name()), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	return b.String()
}

// fieldsByName caches, per message type, its fields by AWS member name.
var fieldsByName sync.Map // protoreflect.FullName → map[string]protoreflect.FieldDescriptor

func fieldsOf(md protoreflect.MessageDescriptor) map[string]protoreflect.FieldDescriptor {
	if m, ok := fieldsByName.Load(md.FullName()); ok {
		return m.(map[string]protoreflect.FieldDescriptor)
	}
	m := map[string]protoreflect.FieldDescriptor{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		m[awsName(fields.Get(i))] = fields.Get(i)
	}
	fieldsByName.Store(md.FullName(), m)
	return m
}

// serializationErr is a request body that does not parse into the
// operation's shape (AWS answers SerializationException).
func serializationErr(format string, args ...any) *Error {
	return &Error{Type: "SerializationException", Message: fmt.Sprintf(format, args...), Status: 400}
}

// decodeRequest fills msg from an AWS JSON request body.
func decodeRequest(body []byte, msg proto.Message) *Error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return serializationErr("the request body is not valid JSON")
	}
	if dec.More() {
		return serializationErr("the request body holds more than one JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return serializationErr("the request body must be a JSON object")
	}
	return decodeObject(obj, msg.ProtoReflect(), "")
}

func decodeObject(obj map[string]any, m protoreflect.Message, path string) *Error {
	fields := fieldsOf(m.Descriptor())
	for name, v := range obj {
		fd, ok := fields[name]
		if !ok {
			// Members raftkms does not implement are refused unless they
			// ask for nothing (null, false, "", empty), so a request never
			// silently means less than it says (Recipient, for one).
			if isEmpty(v) {
				continue
			}
			return &Error{Type: "ValidationException", Status: 400,
				Message: fmt.Sprintf("%s%s is not supported by this service", path, name)}
		}
		if v == nil {
			continue
		}
		if err := decodeField(m, fd, v, path+name); err != nil {
			return err
		}
	}
	return nil
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

func decodeField(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any, path string) *Error {
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			return serializationErr("%s must be an object", path)
		}
		mp := m.Mutable(fd).Map()
		for k, x := range obj {
			val, err := scalar(fd.MapValue(), x, path+"."+k)
			if err != nil {
				return err
			}
			mp.Set(protoreflect.ValueOfString(k).MapKey(), val)
		}
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			return serializationErr("%s must be a list", path)
		}
		list := m.Mutable(fd).List()
		for i, x := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if fd.Kind() == protoreflect.MessageKind {
				obj, ok := x.(map[string]any)
				if !ok {
					return serializationErr("%s must be an object", p)
				}
				el := list.NewElement()
				if err := decodeObject(obj, el.Message(), p+"."); err != nil {
					return err
				}
				list.Append(el)
				continue
			}
			val, err := scalar(fd, x, p)
			if err != nil {
				return err
			}
			list.Append(val)
		}
	case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == timestampName:
		t, err := epochSeconds(v, path)
		if err != nil {
			return err
		}
		m.Set(fd, protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()))
	case fd.Kind() == protoreflect.MessageKind:
		obj, ok := v.(map[string]any)
		if !ok {
			return serializationErr("%s must be an object", path)
		}
		return decodeObject(obj, m.Mutable(fd).Message(), path+".")
	default:
		val, err := scalar(fd, v, path)
		if err != nil {
			return err
		}
		m.Set(fd, val)
	}
	return nil
}

// epochSeconds reads a timestamp: epoch seconds, possibly fractional.
func epochSeconds(v any, path string) (time.Time, *Error) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, serializationErr("%s must be a timestamp in epoch seconds", path)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e11 {
		return time.Time{}, serializationErr("%s must be a timestamp in epoch seconds", path)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func scalar(fd protoreflect.FieldDescriptor, v any, path string) (protoreflect.Value, *Error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, serializationErr("%s must be a string", path)
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		b, ok := v.(bool)
		if !ok {
			return protoreflect.Value{}, serializationErr("%s must be a boolean", path)
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, serializationErr("%s must be a base64 string", path)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return protoreflect.Value{}, serializationErr("%s is not valid base64", path)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		n, ok := v.(json.Number)
		if !ok {
			return protoreflect.Value{}, serializationErr("%s must be an integer", path)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return protoreflect.Value{}, serializationErr("%s must be an integer", path)
		}
		switch fd.Kind() {
		case protoreflect.Int32Kind:
			if i < math.MinInt32 || i > math.MaxInt32 {
				return protoreflect.Value{}, serializationErr("%s is out of range", path)
			}
			return protoreflect.ValueOfInt32(int32(i)), nil
		case protoreflect.Uint32Kind:
			if i < 0 || i > math.MaxUint32 {
				return protoreflect.Value{}, serializationErr("%s is out of range", path)
			}
			return protoreflect.ValueOfUint32(uint32(i)), nil
		case protoreflect.Uint64Kind:
			if i < 0 {
				return protoreflect.Value{}, serializationErr("%s is out of range", path)
			}
			return protoreflect.ValueOfUint64(uint64(i)), nil
		}
		return protoreflect.ValueOfInt64(i), nil
	}
	return protoreflect.Value{}, serializationErr("%s has a type this service cannot read", path)
}

// encodeResponse writes msg as an AWS JSON response body. Empty members
// (unset strings, zero numbers, unset timestamps) are left out, as AWS leaves
// out absent ones; booleans and lists are always written (Enabled: false,
// Truncated: false, "Aliases": []).
func encodeResponse(msg proto.Message) ([]byte, error) {
	return json.Marshal(encodeObject(msg.ProtoReflect()))
}

func encodeObject(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		v := m.Get(fd)
		name := awsName(fd)
		switch {
		case fd.IsMap():
			if v.Map().Len() == 0 {
				continue
			}
			obj := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, x protoreflect.Value) bool {
				obj[k.String()] = encodeScalar(fd.MapValue(), x)
				return true
			})
			out[name] = obj
		case fd.IsList():
			// Lists are written even when empty ("Keys": []), as AWS does.
			l := v.List()
			arr := make([]any, l.Len())
			for j := 0; j < l.Len(); j++ {
				if fd.Kind() == protoreflect.MessageKind {
					arr[j] = encodeObject(l.Get(j).Message())
				} else {
					arr[j] = encodeScalar(fd, l.Get(j))
				}
			}
			out[name] = arr
		case fd.Kind() == protoreflect.MessageKind:
			if !m.Has(fd) {
				continue
			}
			if fd.Message().FullName() == timestampName {
				ts := v.Message().Interface().(*timestamppb.Timestamp)
				out[name] = json.Number(strconv.FormatFloat(float64(ts.AsTime().UnixMilli())/1000, 'f', -1, 64))
				continue
			}
			out[name] = encodeObject(v.Message())
		case fd.Kind() == protoreflect.BoolKind:
			out[name] = v.Bool()
		default:
			if !m.Has(fd) {
				continue
			}
			out[name] = encodeScalar(fd, v)
		}
	}
	return out
}

func encodeScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.MessageKind:
		return encodeObject(v.Message())
	}
	return v.Interface()
}

func encodeJSON(v any) ([]byte, error) { return json.Marshal(v) }
