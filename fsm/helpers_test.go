package fsm

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// harness feeds encoded entries straight into a fresh FSM, no Raft at all.
type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
	now int64 // event time of the next entry, Unix nanoseconds
}

const sec = int64(1e9)

func newHarness(t testing.TB) *harness {
	t.Helper()
	f, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, now: 1_700_000_000 * sec}
	// Start the state's clock, so refusal checks can stamp events with it.
	h.ok(ev(&eventsv1.RegisterNode{NodeId: "n0", GrpcAddr: "127.0.0.1:7000"}))
	return h
}

// apply encodes env, stamped with the harness clock, and applies it.
func (h *harness) apply(env *eventsv1.Envelope) *Result {
	h.t.Helper()
	if env.TimeUnixNano == 0 {
		env.TimeUnixNano = h.now
	}
	data, err := EncodeEntry(env)
	if err != nil {
		h.t.Fatalf("encode: %v", err)
	}
	h.idx++
	return h.f.ApplyEntry(h.idx, data)
}

// advance moves the state clock d forward the way a leader catches up an
// idle cluster's clock: RegisterNode entries at most MaxClockStep apart (one
// entry moves the clock no further, schema 2 on).
func (h *harness) advance(d int64) {
	h.t.Helper()
	target := max(h.now, h.f.Clock()) + d
	for h.f.Clock() < target {
		h.now = min(h.f.Clock()+int64(MaxClockStep), target)
		h.ok(ev(&eventsv1.RegisterNode{NodeId: "n0", GrpcAddr: "127.0.0.1:7000"}))
	}
	h.now = target
}

// ok applies an event that must succeed.
func (h *harness) ok(env *eventsv1.Envelope) *Result {
	h.t.Helper()
	r := h.apply(env)
	if r.Err != nil {
		h.t.Fatalf("%s: unexpected rejection: %v", eventName(env), r.Err)
	}
	return r
}

// refused applies an event that must be rejected with want, and checks that
// the state digest did not change.
func (h *harness) refused(env *eventsv1.Envelope, want *Rejection) {
	h.t.Helper()
	before := h.keyDigest()
	r := h.apply(env)
	if r.Err == nil {
		h.t.Fatalf("%s: applied, want %v", eventName(env), want.Code)
	}
	if !errors.Is(r.Err, want) {
		h.t.Fatalf("%s: got %v (code %d), want code %d", eventName(env), r.Err, r.Err.(*Rejection).Code, want.Code)
	}
	if env.RequestId == "" && h.keyDigest() != before {
		h.t.Fatalf("%s: rejected event changed the state", eventName(env))
	}
}

// keyDigest hashes the state without its clock: a refused event may move the
// clock forward but must change nothing else.
func (h *harness) keyDigest() [32]byte {
	s := h.f.Snapshot()
	s.clock = 0
	d := sha256.New()
	if _, err := s.WriteTo(d); err != nil {
		h.t.Fatal(err)
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

func (h *harness) key(id string) *Key {
	h.t.Helper()
	k, ok := h.f.Key(id)
	if !ok {
		h.t.Fatalf("key %s missing", id)
	}
	return k
}

func (h *harness) state(id string) KeyState { return h.key(id).State }

func eventName(env *eventsv1.Envelope) string {
	if fd := env.ProtoReflect().WhichOneof(eventOneof); fd != nil {
		return string(fd.Message().Name())
	}
	return "unknown"
}

// Event builders.

func ev(e any) *eventsv1.Envelope {
	env := &eventsv1.Envelope{}
	switch x := e.(type) {
	case *eventsv1.CreateKey:
		env.Event = &eventsv1.Envelope_CreateKey{CreateKey: x}
	case *eventsv1.EnableKey:
		env.Event = &eventsv1.Envelope_EnableKey{EnableKey: x}
	case *eventsv1.DisableKey:
		env.Event = &eventsv1.Envelope_DisableKey{DisableKey: x}
	case *eventsv1.ScheduleKeyDeletion:
		env.Event = &eventsv1.Envelope_ScheduleKeyDeletion{ScheduleKeyDeletion: x}
	case *eventsv1.CancelKeyDeletion:
		env.Event = &eventsv1.Envelope_CancelKeyDeletion{CancelKeyDeletion: x}
	case *eventsv1.DeleteKey:
		env.Event = &eventsv1.Envelope_DeleteKey{DeleteKey: x}
	case *eventsv1.EnableKeyRotation:
		env.Event = &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: x}
	case *eventsv1.DisableKeyRotation:
		env.Event = &eventsv1.Envelope_DisableKeyRotation{DisableKeyRotation: x}
	case *eventsv1.RotateKey:
		env.Event = &eventsv1.Envelope_RotateKey{RotateKey: x}
	case *eventsv1.CreateImportParameters:
		env.Event = &eventsv1.Envelope_CreateImportParameters{CreateImportParameters: x}
	case *eventsv1.ImportKeyMaterial:
		env.Event = &eventsv1.Envelope_ImportKeyMaterial{ImportKeyMaterial: x}
	case *eventsv1.ExpireKeyMaterial:
		env.Event = &eventsv1.Envelope_ExpireKeyMaterial{ExpireKeyMaterial: x}
	case *eventsv1.DeleteImportedKeyMaterial:
		env.Event = &eventsv1.Envelope_DeleteImportedKeyMaterial{DeleteImportedKeyMaterial: x}
	case *eventsv1.CreateAlias:
		env.Event = &eventsv1.Envelope_CreateAlias{CreateAlias: x}
	case *eventsv1.UpdateAlias:
		env.Event = &eventsv1.Envelope_UpdateAlias{UpdateAlias: x}
	case *eventsv1.DeleteAlias:
		env.Event = &eventsv1.Envelope_DeleteAlias{DeleteAlias: x}
	case *eventsv1.PutKeyPolicy:
		env.Event = &eventsv1.Envelope_PutKeyPolicy{PutKeyPolicy: x}
	case *eventsv1.UpdateKeyDescription:
		env.Event = &eventsv1.Envelope_UpdateKeyDescription{UpdateKeyDescription: x}
	case *eventsv1.TagKey:
		env.Event = &eventsv1.Envelope_TagKey{TagKey: x}
	case *eventsv1.UntagKey:
		env.Event = &eventsv1.Envelope_UntagKey{UntagKey: x}
	case *eventsv1.RegisterNode:
		env.Event = &eventsv1.Envelope_RegisterNode{RegisterNode: x}
	case *eventsv1.CreateAccessKey:
		env.Event = &eventsv1.Envelope_CreateAccessKey{CreateAccessKey: x}
	case *eventsv1.DeleteAccessKey:
		env.Event = &eventsv1.Envelope_DeleteAccessKey{DeleteAccessKey: x}
	default:
		panic(fmt.Sprintf("ev: %T", e))
	}
	return env
}

func mat(id string, v uint32) []byte { return []byte(fmt.Sprintf("sealed(%s,v%d)", id, v)) }

func createKey(id string) *eventsv1.Envelope {
	return ev(&eventsv1.CreateKey{KeyId: id, Origin: originGenerated, SealedMaterial: mat(id, 1)})
}
func createExternal(id string) *eventsv1.Envelope {
	return ev(&eventsv1.CreateKey{KeyId: id, Origin: originExternal})
}
func createManaged(id string) *eventsv1.Envelope {
	return ev(&eventsv1.CreateKey{KeyId: id, Origin: originService, SealedMaterial: mat(id, 1), RotationPeriodSeconds: 365 * 86400})
}
func enable(id string) *eventsv1.Envelope  { return ev(&eventsv1.EnableKey{KeyId: id}) }
func disable(id string) *eventsv1.Envelope { return ev(&eventsv1.DisableKey{KeyId: id}) }
func schedule(id string, s int64) *eventsv1.Envelope {
	return ev(&eventsv1.ScheduleKeyDeletion{KeyId: id, PendingWindowSeconds: s})
}
func cancelDel(id string) *eventsv1.Envelope { return ev(&eventsv1.CancelKeyDeletion{KeyId: id}) }
func deleteKey(id string, at int64) *eventsv1.Envelope {
	return ev(&eventsv1.DeleteKey{KeyId: id, ExpectedDeletionTimeUnixNano: at})
}
func enableRot(id string, s int64) *eventsv1.Envelope {
	return ev(&eventsv1.EnableKeyRotation{KeyId: id, RotationPeriodSeconds: s})
}
func disableRot(id string) *eventsv1.Envelope { return ev(&eventsv1.DisableKeyRotation{KeyId: id}) }
func rotate(id string, typ RotationType, expected uint32) *eventsv1.Envelope {
	return ev(&eventsv1.RotateKey{KeyId: id, RotationType: typ, ExpectedCurrentVersion: expected,
		SealedMaterial: mat(id, expected+1), OnDemandLimit: 10})
}
func importParams(id, token string) *eventsv1.Envelope {
	return ev(&eventsv1.CreateImportParameters{KeyId: id, ImportTokenId: token, WrappingKeySpec: "RSA_2048",
		WrappingAlgorithm: "RSAES_OAEP_SHA_256", PublicKeyDer: []byte("pub"), SealedPrivateKey: []byte("sealed-priv"),
		ValidForSeconds: 86400})
}
func importMat(id, token string, typ eventsv1.ImportType, version uint32, fp string, validTo int64) *eventsv1.Envelope {
	model := eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE
	if validTo != 0 {
		model = eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES
	}
	return ev(&eventsv1.ImportKeyMaterial{KeyId: id, ImportTokenId: token, ImportType: typ, Version: version,
		SealedMaterial: mat(id, version), MaterialFingerprint: []byte(fp), ExpirationModel: model, ValidToUnixNano: validTo})
}

var (
	automatic = eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC
	onDemand  = eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND
	existing  = eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL
	newMat    = eventsv1.ImportType_IMPORT_TYPE_NEW_KEY_MATERIAL
)
