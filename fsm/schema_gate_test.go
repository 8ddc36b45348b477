package fsm

import (
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func TestMinSchema(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *eventsv1.Envelope
		want uint32
	}{
		{"no event", &eventsv1.Envelope{}, 1},
		{"symmetric CreateKey", &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{KeyId: "k"}}}, 1},
		{"SYMMETRIC_DEFAULT CreateKey", &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{KeyId: "k", KeySpec: "SYMMETRIC_DEFAULT"}}}, 1},
		{"RSA CreateKey", &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{KeyId: "k", KeySpec: "RSA_2048"}}}, 2},
		{"RegisterNode", &eventsv1.Envelope{Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{NodeId: "n"}}}, 1},
		{"EnableKeyRotation", &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{KeyId: "k"}}}, 1},
		{"EnableKeyRotation with a version limit", &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{KeyId: "k", MaxDecryptionVersions: 2}}}, 2},
		{"CreateAccessKey", &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateAccessKey{CreateAccessKey: &eventsv1.CreateAccessKey{AccessKeyId: "a"}}}, 2},
		{"ImportKeyMaterial", &eventsv1.Envelope{Event: &eventsv1.Envelope_ImportKeyMaterial{ImportKeyMaterial: &eventsv1.ImportKeyMaterial{KeyId: "k"}}}, 1},
		{"staging ImportKeyMaterial", &eventsv1.Envelope{Event: &eventsv1.Envelope_ImportKeyMaterial{ImportKeyMaterial: &eventsv1.ImportKeyMaterial{KeyId: "k", Stage: true}}}, 3},
		{"RotateKey", &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{KeyId: "k"}}}, 1},
		{"RotateKey to staged material", &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{KeyId: "k", StagedMaterialFingerprint: []byte("fp")}}}, 3},
		{"RotateKeys", &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKeys{RotateKeys: &eventsv1.RotateKeys{}}}, SchemaBatch},
		{"ResealMaterial of staged material", &eventsv1.Envelope{Event: &eventsv1.Envelope_ResealMaterial{ResealMaterial: &eventsv1.ResealMaterial{KeyId: "k", Kind: eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL}}}, 3},
	} {
		if got := MinSchema(tc.env); got != tc.want {
			t.Errorf("%s: MinSchema = %d, want %d", tc.name, got, tc.want)
		}
	}
	// Every event case beyond schema 1's needs schema 2, and those added
	// since their own later schema.
	later := map[string]uint32{"rotate_keys": SchemaBatch}
	fields := eventOneof.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Number() <= lastSchema1Event {
			continue
		}
		env := &eventsv1.Envelope{}
		m := env.ProtoReflect()
		m.Set(fd, m.NewField(fd))
		want := uint32(2)
		if s, ok := later[string(fd.Name())]; ok {
			want = s
		}
		if got := MinSchema(env); got != want {
			t.Errorf("event %s (field %d): MinSchema = %d, want %d", fd.Name(), fd.Number(), got, want)
		}
	}
}
