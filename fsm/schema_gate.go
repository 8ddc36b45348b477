package fsm

import eventsv1 "github.com/raftkms/raftkms/proto/events/v1"

// lastSchema1Event is the highest Envelope oneof field number a schema-1
// build knows (CreateKey = 10 … RegisterNode = 30). Every event case added
// since needs schema 2.
const lastSchema1Event = 30

// MinSchema is the oldest envelope schema whose builds understand every
// part of env: an event type they know, with no field whose meaning they
// would miss. The proposer refuses an event whose MinSchema is above the
// schema every member announces (raftnode caps proposals to it), so during
// a rolling upgrade an older member never meets an event it would halt on
// (an unknown type) or apply differently (a key spec it refuses, a version
// limit it ignores). Old entries are never judged by it: it is about what
// may be proposed now, not about what was.
func MinSchema(env *eventsv1.Envelope) uint32 {
	fd := env.ProtoReflect().WhichOneof(eventOneof)
	if fd == nil {
		return 1
	}
	switch e := env.Event.(type) {
	case *eventsv1.Envelope_CreateKey:
		if s := e.CreateKey.GetKeySpec(); s != "" && s != "SYMMETRIC_DEFAULT" {
			return 2
		}
	case *eventsv1.Envelope_EnableKeyRotation:
		if e.EnableKeyRotation.GetMaxDecryptionVersions() != 0 {
			return 2
		}
	}
	// Staged imported material (SchemaStage): a schema-2 member would make
	// it current at once, or refuse the rotation and re-seal of it.
	switch e := env.Event.(type) {
	case *eventsv1.Envelope_ImportKeyMaterial:
		if e.ImportKeyMaterial.GetStage() {
			return SchemaStage
		}
	case *eventsv1.Envelope_RotateKey:
		if len(e.RotateKey.GetStagedMaterialFingerprint()) > 0 {
			return SchemaStage
		}
	case *eventsv1.Envelope_ResealMaterial:
		if e.ResealMaterial.GetKind() == eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL {
			return SchemaStage
		}
	}
	// Batched rotations (SchemaBatch): a schema-3 member does not know the
	// event at all.
	if _, ok := env.Event.(*eventsv1.Envelope_RotateKeys); ok {
		return SchemaBatch
	}
	if fd.Number() > lastSchema1Event {
		return 2
	}
	return 1
}
