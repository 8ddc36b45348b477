package fsm

import (
	"google.golang.org/protobuf/reflect/protoreflect"
)

// EntryKeys names what a log entry may change, read from the event itself
// before it is applied: the key IDs its event (or each item of a batch)
// names, and other when it may change anything not tied to one key (an
// alias, an access key, a node, or an event this build cannot read). A node
// serving lease reads waits for appended entries that name a key it reads
// (raftnode's pending index). It errs on the side of other.
func EntryKeys(data []byte) (keys []string, other bool) {
	env, err := DecodeEntry(data)
	if err != nil {
		return nil, true
	}
	fd := env.ProtoReflect().WhichOneof(eventOneof)
	if fd == nil || fd.Message() == nil {
		return nil, true
	}
	reg, ok := handlers[fd.Number()]
	if !ok || otherEvents[reg.name] {
		return nil, true
	}
	keys = appendKeyIDs(keys, env.ProtoReflect().Get(fd).Message(), 0)
	return keys, len(keys) == 0
}

// appendKeyIDs adds the key_id fields of m and of its message fields (one
// level of nesting covers batches).
func appendKeyIDs(keys []string, m protoreflect.Message, depth int) []string {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "key_id" && fd.Kind() == protoreflect.StringKind && !fd.IsList():
			if id := v.String(); id != "" {
				keys = append(keys, id)
			}
		case depth == 0 && fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				keys = appendKeyIDs(keys, l.Get(i).Message(), depth+1)
			}
		case depth == 0 && fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			keys = appendKeyIDs(keys, v.Message(), depth+1)
		}
		return true
	})
	return keys
}
