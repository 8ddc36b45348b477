package fsm

import (
	"bytes"
	"crypto/sha256"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// stageMat is an ImportKeyMaterial with NEW_KEY_MATERIAL as this build's
// proposer writes it: stage set, at the envelope schema given (0 = newest).
func stageMat(id, token string, version uint32, fp string, schema uint32) *eventsv1.Envelope {
	env := importMat(id, token, newMat, version, fp, 0)
	env.GetImportKeyMaterial().Stage = true
	env.SchemaVersion = schema
	return env
}

// rotateStaged is the ON_DEMAND RotateKey that makes staged material current.
func rotateStaged(id string, expected uint32, fp string) *eventsv1.Envelope {
	return ev(&eventsv1.RotateKey{KeyId: id, RotationType: onDemand, ExpectedCurrentVersion: expected,
		StagedMaterialFingerprint: []byte(fp), OnDemandLimit: 10})
}

// TestStagedImportRules: NEW_KEY_MATERIAL stages material (PENDING_ROTATION)
// from schema 3 on; an ON_DEMAND rotation naming it makes it the current
// version; every out-of-place step is a deterministic rejection.
func TestStagedImportRules(t *testing.T) {
	const k = "ext"
	setup := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(createExternal(k))
		h.ok(importParams(k, "tok"))
		h.ok(importMat(k, "tok", existing, 1, "fp1", 0))
		return h
	}
	type step struct {
		env  *eventsv1.Envelope
		want *Rejection // nil: must apply
	}
	cases := []struct {
		name   string
		steps  func() []step
		cur    uint32 // current version afterwards
		staged string // fingerprint staged afterwards ("" = none)
	}{
		{"stage keeps the current version", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}}
		}, 1, "fp2"},
		{"rotate makes staged material current", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}, {rotateStaged(k, 1, "fp2"), nil}}
		}, 2, ""},
		{"staging again replaces the staged material", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}, {stageMat(k, "tok", 2, "fp3", 0), nil},
				{rotateStaged(k, 1, "fp2"), ErrConflict}, {rotateStaged(k, 1, "fp3"), nil}}
		}, 2, ""},
		{"rotate without staged material", func() []step {
			return []step{{rotateStaged(k, 1, "fp2"), ErrInvalidState}}
		}, 1, ""},
		{"rotate twice applies once", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}, {rotateStaged(k, 1, "fp2"), nil},
				{rotateStaged(k, 1, "fp2"), ErrInvalidState}}
		}, 2, ""},
		{"staged material must be new", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp1", 0), ErrIncorrectKeyMaterial}}
		}, 1, ""},
		{"staged for the wrong version", func() []step {
			return []step{{stageMat(k, "tok", 3, "fp2", 0), ErrConflict}}
		}, 1, ""},
		{"rotate with a stale expected version", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}, {rotateStaged(k, 0, "fp2"), ErrConflict}}
		}, 1, "fp2"},
		{"staged material is not fresh material for generated keys", func() []step {
			e := rotateStaged("gen", 1, "fp2")
			return []step{{createKey("gen"), nil}, {e, ErrUnsupported}}
		}, 1, ""},
		{"stage below schema 3 adds the version at once", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 2), nil}}
		}, 2, ""},
		{"disabled key does not rotate", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil}, {disable(k), nil}, {rotateStaged(k, 1, "fp2"), ErrDisabled}}
		}, 1, "fp2"},
		{"deleting imported material drops the staged material", func() []step {
			return []step{{stageMat(k, "tok", 2, "fp2", 0), nil},
				{ev(&eventsv1.DeleteImportedKeyMaterial{KeyId: k}), nil}}
		}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t)
			for _, s := range tc.steps() {
				if s.want == nil {
					h.ok(s.env)
				} else {
					h.refused(s.env, s.want)
				}
			}
			key := h.key(k)
			if len(tc.steps()) > 0 && tc.steps()[0].env.GetCreateKey() != nil {
				key = h.key("gen")
			}
			if got := key.CurrentVersion(); got != tc.cur {
				t.Fatalf("current version %d, want %d", got, tc.cur)
			}
			switch {
			case tc.staged == "" && key.Staged != nil:
				t.Fatalf("material %q still staged", key.Staged.Fingerprint)
			case tc.staged != "" && (key.Staged == nil || string(key.Staged.Fingerprint) != tc.staged):
				t.Fatalf("staged %v, want %q", key.Staged, tc.staged)
			}
		})
	}
}

// TestStagedRotationVersion: the rotated-to version is ON_DEMAND, holds the
// staged material and fingerprint, counts against the on-demand limit, and
// the staged material survives snapshot and restore with the same digest.
func TestStagedRotationVersion(t *testing.T) {
	const k = "ext"
	h := newHarness(t)
	h.ok(createExternal(k))
	h.ok(importParams(k, "tok"))
	h.ok(importMat(k, "tok", existing, 1, "fp1", 0))
	h.ok(stageMat(k, "tok", 2, "fp2", 0))

	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != h.f.Digest() {
		t.Fatal("restore changed the digest of a key with staged material")
	}
	if rk, _ := g.Key(k); rk.Staged == nil || string(rk.Staged.Fingerprint) != "fp2" || rk.Staged.Version != 2 {
		t.Fatalf("restored staged material %+v", rk.Staged)
	}

	h.ok(rotateStaged(k, 1, "fp2"))
	key := h.key(k)
	v := key.Version(2)
	if v == nil || v.Type != onDemand || !bytes.Equal(v.Sealed, mat(k, 2)) || string(v.Fingerprint) != "fp2" {
		t.Fatalf("version 2 = %+v", v)
	}
	if key.OnDemand != 1 || key.Staged != nil {
		t.Fatalf("on-demand count %d, staged %v", key.OnDemand, key.Staged)
	}
	if v1 := key.Version(1); v1 == nil || !bytes.Equal(v1.Sealed, mat(k, 1)) {
		t.Fatal("version 1 lost its material")
	}
}

// TestUnstagedNewMaterialReplays: an ImportKeyMaterial NEW_KEY_MATERIAL
// entry without stage (as every entry before staging) still adds an IMPORTED
// version at once, at every schema.
func TestUnstagedNewMaterialReplays(t *testing.T) {
	for _, schema := range []uint32{1, 2, SchemaVersion} {
		h := newHarness(t)
		h.ok(createExternal("ext"))
		h.ok(importParams("ext", "tok"))
		h.ok(importMat("ext", "tok", existing, 1, "fp1", 0))
		env := importMat("ext", "tok", newMat, 2, "fp2", 0)
		env.SchemaVersion = schema
		h.ok(env)
		if v := h.key("ext").Version(2); v == nil || v.Type != eventsv1.RotationType_ROTATION_TYPE_IMPORTED || h.key("ext").Staged != nil {
			t.Fatalf("schema %d: version 2 = %+v", schema, v)
		}
	}
}

// TestStagedMaterialResealed: a root-key rotation's re-seal loop sees staged
// material among the sealed blobs, and its ResealMaterial swaps the staged
// blob (guarded by the old blob's SHA-256) without making it current.
func TestStagedMaterialResealed(t *testing.T) {
	const k = "ext"
	h := newHarness(t)
	h.ok(createExternal(k))
	h.ok(importParams(k, "tok"))
	h.ok(importMat(k, "tok", existing, 1, "fp1", 0))
	h.ok(stageMat(k, "tok", 2, "fp2", 0))
	found := false
	h.f.SealedBlobs(func(b SealedBlob) bool {
		if b.Kind == eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL && b.KeyID == k && b.Version == 2 && bytes.Equal(b.Sealed, mat(k, 2)) {
			found = true
		}
		return true
	})
	if !found {
		t.Fatal("SealedBlobs does not list the staged material")
	}
	reseal := func(old []byte) *eventsv1.Envelope {
		sum := sha256.Sum256(old)
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_ResealMaterial{ResealMaterial: &eventsv1.ResealMaterial{
			Kind: eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL, KeyId: k, Version: 2, ExpectedSha256: sum[:], Sealed: []byte("resealed")}}}
	}
	h.refused(reseal([]byte("not the staged blob")), ErrConflict)
	h.ok(reseal(mat(k, 2)))
	if st := h.key(k).Staged; st == nil || string(st.Sealed) != "resealed" || h.key(k).CurrentVersion() != 1 {
		t.Fatalf("after re-seal: staged %+v, current %d", st, h.key(k).CurrentVersion())
	}
	h.ok(rotateStaged(k, 1, "fp2"))
	if v := h.key(k).Version(2); v == nil || string(v.Sealed) != "resealed" {
		t.Fatalf("rotated to %+v", v)
	}
}
