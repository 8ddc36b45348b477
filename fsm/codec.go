package fsm

import (
	"fmt"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/protobuf/proto"
)

// SchemaVersion is the newest envelope schema this build understands, and
// the one EncodeEntry stamps on envelopes that carry none.
//
// Schema 2 tightens the rules at the trust boundary; entries of schema 1
// keep the rules they were applied under, so a log written before an upgrade
// replays to exactly the state it produced then:
//   - request IDs are scoped to the principal and bound to the envelope's
//     request_fingerprint (a different request under the same ID is
//     CodeIdempotentParameterMismatch);
//   - the state clock moves at most MaxClockStep per entry;
//   - UpdateAlias/DeleteAlias honour expected_target_key_id;
//   - RegisterNode's root_key_check sets, then must match, the cluster's;
//   - a key's history is bounded (MaxHistory) and a key has at most MaxTags
//     tags; request IDs and principals have a maximum length.
//
// Schema 3 lets ImportKeyMaterial stage NEW_KEY_MATERIAL (its stage field)
// until an ON_DEMAND RotateKey makes it current. A schema-2 build does not
// know the field and adds such material as a version at once, so the field
// counts only in entries of schema 3 on: every node, old or new, gives an
// entry the same meaning, and a proposer stages only once every member
// announces schema 3 (raftnode's ProposeSchema).
//
// Schema 4 adds RotateKeys, many automatic rotations in one entry. An older
// build does not know the event and would halt on it, so it is proposed only
// once every member announces schema 4 (MinSchema); until then the scheduler
// proposes one RotateKey per rotation, as before.
const SchemaVersion = 4

// schemaTrust is the first schema with the rules listed above.
const schemaTrust = 2

// SchemaStage is the first schema whose ImportKeyMaterial entries may stage
// new material (see SchemaVersion).
const SchemaStage = 3

// SchemaBatch is the first schema that knows RotateKeys (see SchemaVersion).
const SchemaBatch = 4

// SchemaLeases is the first schema whose builds grant and honour read leases
// (raftnode/lease.go): a leader grants leases only once every member
// announces it, because an older leader elected later would acknowledge
// writes without waiting out the leases granted before it.
const SchemaLeases = 4

// entryFormatV1 is the first byte of every raftkms log entry: a protobuf
// Envelope follows. A different first byte is corruption or a newer format.
const entryFormatV1 byte = 0x01

// maxEntrySize bounds one log entry; larger entries are refused before
// proposing and treated as corruption when decoding.
const maxEntrySize = 1 << 20

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// EncodeEntry turns an envelope into log entry bytes.
func EncodeEntry(env *eventsv1.Envelope) ([]byte, error) {
	if env.GetSchemaVersion() == 0 {
		env.SchemaVersion = SchemaVersion
	}
	size := marshalOpts.Size(env)
	if size+1 > maxEntrySize {
		return nil, fmt.Errorf("%w: entry of %d bytes exceeds %d", ErrValidation, size+1, maxEntrySize)
	}
	buf := make([]byte, 1, size+1)
	buf[0] = entryFormatV1
	return marshalOpts.MarshalAppend(buf, env)
}

// DecodeEntry parses log entry bytes. It never panics: anything it cannot
// read is ErrCorruptEntry.
func DecodeEntry(data []byte) (*eventsv1.Envelope, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorruptEntry)
	}
	if len(data) > maxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes is too large", ErrCorruptEntry, len(data))
	}
	if data[0] != entryFormatV1 {
		return nil, fmt.Errorf("%w: unknown format byte 0x%02x", ErrCorruptEntry, data[0])
	}
	env := &eventsv1.Envelope{}
	if err := proto.Unmarshal(data[1:], env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptEntry, err)
	}
	if env.SchemaVersion == 0 {
		return nil, fmt.Errorf("%w: missing schema version", ErrCorruptEntry)
	}
	return env, nil
}
