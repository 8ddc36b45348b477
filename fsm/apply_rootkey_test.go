package fsm

import (
	"bytes"
	"crypto/sha256"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func requestRootRotation(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_RequestRootKeyRotation{RequestRootKeyRotation: &eventsv1.RequestRootKeyRotation{
		TargetRootKeyId: id, TargetRootKeyCheck: []byte("check(" + id + ")")}}}
}

func completeRootRotation(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CompleteRootKeyRotation{CompleteRootKeyRotation: &eventsv1.CompleteRootKeyRotation{
		TargetRootKeyId: id}}}
}

func reseal(kind eventsv1.ResealKind, keyID string, v uint32, accessKeyID string, old, sealed []byte) *eventsv1.Envelope {
	sum := sha256.Sum256(old)
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_ResealMaterial{ResealMaterial: &eventsv1.ResealMaterial{
		Kind: kind, KeyId: keyID, Version: v, AccessKeyId: accessKeyID, ExpectedSha256: sum[:], Sealed: sealed}}}
}

func resealVersion(keyID string, v uint32, old, sealed []byte) *eventsv1.Envelope {
	return reseal(eventsv1.ResealKind_RESEAL_KIND_KEY_VERSION, keyID, v, "", old, sealed)
}

func TestResealGuard(t *testing.T) {
	const (
		kv  = eventsv1.ResealKind_RESEAL_KIND_KEY_VERSION
		imp = eventsv1.ResealKind_RESEAL_KIND_IMPORT_PRIVATE_KEY
		acc = eventsv1.ResealKind_RESEAL_KIND_ACCESS_KEY_SECRET
	)
	newBlob := []byte("resealed")
	sealedIs := func(get func(h *harness) []byte, want []byte) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			t.Helper()
			if got := get(h); !bytes.Equal(got, want) {
				t.Fatalf("sealed blob is %q, want %q", got, want)
			}
		}
	}
	version := func(id string, v uint32) func(h *harness) []byte {
		return func(h *harness) []byte { return h.key(id).Version(v).Sealed }
	}
	runCases(t, []transitionCase{
		{name: "key version", setup: []*eventsv1.Envelope{createKey("k1")},
			event: resealVersion("k1", 1, mat("k1", 1), newBlob), check: sealedIs(version("k1", 1), newBlob)},
		{name: "second version only", setup: []*eventsv1.Envelope{createKey("k1"), rotate("k1", eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND, 1)},
			event: resealVersion("k1", 1, mat("k1", 1), newBlob), check: func(t *testing.T, h *harness) {
				sealedIs(version("k1", 1), newBlob)(t, h)
				if bytes.Equal(h.key("k1").Version(2).Sealed, newBlob) {
					t.Fatal("version 2 was re-sealed too")
				}
			}},
		{name: "stale blob", setup: []*eventsv1.Envelope{createKey("k1")},
			event: resealVersion("k1", 1, []byte("another blob"), newBlob), want: ErrConflict},
		{name: "applied twice", setup: []*eventsv1.Envelope{createKey("k1"), resealVersion("k1", 1, mat("k1", 1), newBlob)},
			event: resealVersion("k1", 1, mat("k1", 1), []byte("again")), want: ErrConflict},
		{name: "chained re-seal", setup: []*eventsv1.Envelope{createKey("k1"), resealVersion("k1", 1, mat("k1", 1), newBlob)},
			event: resealVersion("k1", 1, newBlob, []byte("again")), check: sealedIs(version("k1", 1), []byte("again"))},
		{name: "missing version", setup: []*eventsv1.Envelope{createKey("k1")},
			event: resealVersion("k1", 2, mat("k1", 2), newBlob), want: ErrNotFound},
		{name: "missing key", event: resealVersion("k9", 1, mat("k9", 1), newBlob), want: ErrNotFound},
		{name: "pending deletion", setup: []*eventsv1.Envelope{createKey("k1"), schedule("k1", 7*86400)},
			event: resealVersion("k1", 1, mat("k1", 1), newBlob), state: KeyStatePendingDeletion, check: sealedIs(version("k1", 1), newBlob)},
		{name: "no new blob", setup: []*eventsv1.Envelope{createKey("k1")},
			event: resealVersion("k1", 1, mat("k1", 1), nil), want: ErrValidation},
		{name: "no guard", setup: []*eventsv1.Envelope{createKey("k1")},
			event: &eventsv1.Envelope{Event: &eventsv1.Envelope_ResealMaterial{ResealMaterial: &eventsv1.ResealMaterial{
				Kind: kv, KeyId: "k1", Version: 1, Sealed: newBlob}}}, want: ErrValidation},
		{name: "unknown kind", setup: []*eventsv1.Envelope{createKey("k1")},
			event: reseal(eventsv1.ResealKind_RESEAL_KIND_UNSPECIFIED, "k1", 1, "", mat("k1", 1), newBlob), want: ErrValidation},
		{name: "import private key", setup: []*eventsv1.Envelope{createExternal("k1"), importParams("k1", "t1")},
			event: reseal(imp, "k1", 0, "", []byte("sealed-priv"), newBlob),
			check: sealedIs(func(h *harness) []byte { return h.key("k1").Import.SealedPrivateKey }, newBlob)},
		{name: "import private key stale", setup: []*eventsv1.Envelope{createExternal("k1"), importParams("k1", "t1")},
			event: reseal(imp, "k1", 0, "", []byte("other"), newBlob), want: ErrConflict},
		{name: "import without parameters", setup: []*eventsv1.Envelope{createKey("k1")},
			event: reseal(imp, "k1", 0, "", []byte("x"), newBlob), want: ErrInvalidState},
		{name: "access key", setup: []*eventsv1.Envelope{createAccess("AK1", "alice")},
			event: reseal(acc, "", 0, "AK1", []byte("sealed(AK1)"), newBlob),
			check: sealedIs(func(h *harness) []byte { a, _ := h.f.AccessKey("AK1"); return a.SealedSecret }, newBlob)},
		{name: "access key stale", setup: []*eventsv1.Envelope{createAccess("AK1", "alice")},
			event: reseal(acc, "", 0, "AK1", []byte("old"), newBlob), want: ErrConflict},
		{name: "access key missing", event: reseal(acc, "", 0, "AK9", []byte("old"), newBlob), want: ErrNotFound},
	})
}

func TestRootKeyRotationRequest(t *testing.T) {
	h := newHarness(t)
	h.ok(ev(&eventsv1.RegisterNode{NodeId: "n1", RootKeyCheck: []byte("check(r1)"), RootKeyId: "r1"}))
	h.refused(completeRootRotation("r2"), ErrConflict)
	h.refused(&eventsv1.Envelope{Event: &eventsv1.Envelope_RequestRootKeyRotation{RequestRootKeyRotation: &eventsv1.RequestRootKeyRotation{
		TargetRootKeyId: "r2"}}}, ErrValidation)
	h.ok(requestRootRotation("r2"))
	if id, check := h.f.RootKeyRotation(); id != "r2" || string(check) != "check(r2)" {
		t.Fatalf("rotation = %q %q", id, check)
	}

	// The request survives a snapshot.
	var buf bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if id, check := g.RootKeyRotation(); id != "r2" || string(check) != "check(r2)" {
		t.Fatalf("restored rotation = %q %q", id, check)
	}
	if g.Digest() != h.f.Digest() {
		t.Fatal("restored digest differs")
	}

	h.refused(completeRootRotation("r3"), ErrConflict)
	if _, id := h.f.RootKeyCheck(); id != "r1" {
		t.Fatalf("root key %s after a refused completion", id)
	}
	h.ok(completeRootRotation("r2"))
	if check, id := h.f.RootKeyCheck(); id != "r2" || string(check) != "check(r2)" {
		t.Fatalf("root key after completion = %q %q", id, check)
	}
	if id, _ := h.f.RootKeyRotation(); id != "" {
		t.Fatalf("rotation %q still requested", id)
	}
	h.refused(completeRootRotation("r2"), ErrConflict)
	// A node with the new key registers; one with the old key no longer does.
	h.ok(ev(&eventsv1.RegisterNode{NodeId: "n2", RootKeyCheck: []byte("check(r2)"), RootKeyId: "r2"}))
	h.refused(ev(&eventsv1.RegisterNode{NodeId: "n3", RootKeyCheck: []byte("check(r1)"), RootKeyId: "r1"}), &Rejection{Code: CodeRootKeyMismatch})
}

func TestSealedBlobs(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("k1"))
	h.ok(rotate("k1", eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND, 1))
	h.ok(createExternal("k2"))
	h.ok(importParams("k2", "t1"))
	h.ok(createAccess("AK1", "alice"))
	var got []string
	h.f.SealedBlobs(func(b SealedBlob) bool {
		got = append(got, b.Kind.String()+":"+string(b.Sealed))
		return true
	})
	want := []string{"RESEAL_KIND_KEY_VERSION:" + string(mat("k1", 1)), "RESEAL_KIND_KEY_VERSION:" + string(mat("k1", 2)),
		"RESEAL_KIND_IMPORT_PRIVATE_KEY:sealed-priv", "RESEAL_KIND_ACCESS_KEY_SECRET:sealed(AK1)"}
	if len(got) != len(want) {
		t.Fatalf("blobs %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("blob %d = %q, want %q", i, got[i], want[i])
		}
	}
}
