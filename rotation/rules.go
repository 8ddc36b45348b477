package rotation

import (
	"strconv"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Kind is a change the scheduler makes to a key when it falls due.
type Kind uint8

// The scheduler's changes. A key can have more than one pending at a time
// (an imported key pending deletion may also have material that expires).
const (
	KindRotate Kind = iota + 1 // automatic rotation: RotateKey AUTOMATIC
	KindDelete                 // end of the waiting period: DeleteKey
	KindExpire                 // imported material reached ValidTo: ExpireKeyMaterial
	KindRetire                 // more versions decrypt than the key allows: UpdateKeyVersionPolicy (automatic)
)

var kinds = [...]Kind{KindRotate, KindDelete, KindExpire, KindRetire}

// String is the kind's name, also the first part of its request IDs.
func (k Kind) String() string {
	switch k {
	case KindRotate:
		return "rotate"
	case KindDelete:
		return "delete"
	case KindExpire:
		return "expire"
	case KindRetire:
		return "retire"
	}
	return "kind" + strconv.Itoa(int(k))
}

// due says when key k needs a change of kind, and the guard value the event
// will carry (expected version, deletion time or ValidTo). ok is false when
// no such change is pending. These are the rules of DESIGN §4; the state
// machine checks them again, so a stale decision is only a rejection.
func due(k *fsm.Key, kind Kind) (at int64, guard int64, ok bool) {
	switch kind {
	case KindRotate:
		// One rule for the scheduler and the state machine (fsm.RotationDue).
		at, ok := fsm.RotationDue(k)
		if !ok {
			return 0, 0, false
		}
		return at, int64(k.CurrentVersion()), true
	case KindDelete:
		if k.State != fsm.KeyStatePendingDeletion || k.DeletionAt <= 0 {
			return 0, 0, false
		}
		return k.DeletionAt, k.DeletionAt, true
	case KindExpire:
		if k.Origin != fsm.OriginExternal || k.State == fsm.KeyStateDeleted ||
			k.Expiration != eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES ||
			k.ValidTo <= 0 || !k.HasMaterial() {
			return 0, 0, false
		}
		return k.ValidTo, k.ValidTo, true
	case KindRetire:
		// One rule for the scheduler and the state machine (fsm.RetireDue).
		// It is due at once: from the time of the key's latest change (the
		// rotation or the new limit that took it past the limit). The guard
		// is the new minimum; the event also carries the current version.
		lo, ok := fsm.RetireDue(k)
		if !ok {
			return 0, 0, false
		}
		var at int64
		if n := len(k.History); n > 0 {
			at = k.History[n-1].Time
		}
		return at, int64(lo), true
	}
	return 0, 0, false
}

// RequestID is the idempotency token of one intended change:
//
//	<kind>/<keyID>/<guard>/<history length>[/retry<n>]
//
// Why each part:
//   - kind, key and guard (expected version, deletion or ValidTo time) name
//     the change. Two schedulers (an old and a new leader) that see the same
//     key state build the same ID, and so does a retry after an ambiguous
//     Propose error: the state machine's idempotency then returns the first
//     result, and the guard would reject a second application anyway.
//   - The history length changes with every event applied to the key. The
//     state machine remembers a request ID with its result, rejections
//     included, for its idempotency window (24 h of entry time). Without
//     this part, a rotation rejected because the key was disabled at that
//     moment would be answered with that old rejection after the key is
//     enabled again, although the guard values are unchanged.
//   - retry<n> is added only after n definite rejections of the change with
//     the key's history unchanged (for example "not due" when the
//     proposer's clock and the state disagree): the same ID would only
//     replay the remembered rejection. It is safe because the guard, not the
//     ID, is what makes the change apply at most once. It is never added
//     after an ambiguous error: a retry of an entry that may still commit
//     must keep its ID.
func RequestID(kind Kind, keyID string, guard int64, historyLen int, retry int) string {
	b := make([]byte, 0, len(keyID)+48)
	b = append(b, kind.String()...)
	b = append(b, '/')
	b = append(b, keyID...)
	b = append(b, '/')
	b = strconv.AppendInt(b, guard, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(historyLen), 10)
	if retry > 0 {
		b = append(b, "/retry"...)
		b = strconv.AppendInt(b, int64(retry), 10)
	}
	return string(b)
}

// envelope builds the event for a change decided from key k. material is
// the sealed new version for a rotation, nil otherwise.
func envelope(kind Kind, k *fsm.Key, guard int64, now int64, requestID string, material []byte) *eventsv1.Envelope {
	env := &eventsv1.Envelope{
		SchemaVersion: fsm.SchemaVersion,
		TimeUnixNano:  now,
		RequestId:     requestID,
		Principal:     Principal,
	}
	switch kind {
	case KindRotate:
		env.Event = &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{
			KeyId:                  k.ID,
			RotationType:           eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC,
			ExpectedCurrentVersion: uint32(guard),
			SealedMaterial:         material,
		}}
	case KindDelete:
		env.Event = &eventsv1.Envelope_DeleteKey{DeleteKey: &eventsv1.DeleteKey{
			KeyId:                        k.ID,
			ExpectedDeletionTimeUnixNano: guard,
		}}
	case KindExpire:
		env.Event = &eventsv1.Envelope_ExpireKeyMaterial{ExpireKeyMaterial: &eventsv1.ExpireKeyMaterial{
			KeyId:                   k.ID,
			ExpectedValidToUnixNano: guard,
		}}
	case KindRetire:
		env.Event = &eventsv1.Envelope_UpdateKeyVersionPolicy{UpdateKeyVersionPolicy: &eventsv1.UpdateKeyVersionPolicy{
			KeyId:                  k.ID,
			MinDecryptionVersion:   uint32(guard),
			Automatic:              true,
			ExpectedCurrentVersion: k.CurrentVersion(),
		}}
	}
	return env
}
