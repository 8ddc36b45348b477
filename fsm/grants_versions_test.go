package fsm

import (
	"bytes"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// evg wraps the events of grants and version controls (ev the others).
func evg(e any) *eventsv1.Envelope {
	switch x := e.(type) {
	case *eventsv1.CreateGrant:
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateGrant{CreateGrant: x}}
	case *eventsv1.RetireGrant:
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_RetireGrant{RetireGrant: x}}
	case *eventsv1.RevokeGrant:
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_RevokeGrant{RevokeGrant: x}}
	case *eventsv1.UpdateKeyVersionPolicy:
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_UpdateKeyVersionPolicy{UpdateKeyVersionPolicy: x}}
	case *eventsv1.DestroyKeyVersion:
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_DestroyKeyVersion{DestroyKeyVersion: x}}
	}
	return ev(e)
}

func gid(c byte) string { return strings.Repeat(string(c), 64) }

func createGrant(key, id, name string, ops ...string) *eventsv1.Envelope {
	return evg(&eventsv1.CreateGrant{KeyId: key, GrantId: id, GrantToken: "tok-" + id[:4], Name: name,
		GranteePrincipal: "app", RetiringPrincipal: "ops", Operations: ops,
		Constraints: &eventsv1.GrantConstraints{EncryptionContextSubset: []*eventsv1.Tag{{Key: "dept", Value: "a"}}}})
}

func TestGrantRules(t *testing.T) {
	const k = "k1"
	runCases(t, []transitionCase{
		{name: "create", setup: []*eventsv1.Envelope{createKey(k)}, event: createGrant(k, gid('a'), "", "Decrypt", "Encrypt"),
			check: func(t *testing.T, h *harness) {
				g := h.key(k).FindGrant(gid('a'))
				if g == nil || g.Grantee != "app" || g.Issuer != h.key(k).Creator() || len(g.ECSubset) != 1 {
					t.Fatalf("grant %+v", g)
				}
				if !g.Allows("Decrypt", map[string]string{"dept": "a", "x": "y"}) || g.Allows("Decrypt", map[string]string{"dept": "b"}) ||
					g.Allows("Decrypt", nil) || g.Allows("ReEncryptFrom", map[string]string{"dept": "a"}) {
					t.Fatal("grant constraint or operation check is wrong")
				}
			}},
		{name: "same name and parameters is the same grant", setup: []*eventsv1.Envelope{createKey(k), createGrant(k, gid('a'), "n", "Decrypt")},
			event: createGrant(k, gid('b'), "n", "Decrypt"),
			check: func(t *testing.T, h *harness) {
				if gs := h.key(k).Grants; len(gs) != 1 || gs[0].ID != gid('a') {
					t.Fatalf("grants %+v", gs)
				}
			}},
		{name: "same name other parameters is a new grant", setup: []*eventsv1.Envelope{createKey(k), createGrant(k, gid('a'), "n", "Decrypt")},
			event: createGrant(k, gid('b'), "n", "Encrypt"),
			check: func(t *testing.T, h *harness) {
				if gs := h.key(k).Grants; len(gs) != 2 {
					t.Fatalf("grants %+v", gs)
				}
			}},
		{name: "unsorted operations", setup: []*eventsv1.Envelope{createKey(k)}, event: createGrant(k, gid('a'), "", "Encrypt", "Decrypt"), want: ErrValidation},
		{name: "duplicate operations", setup: []*eventsv1.Envelope{createKey(k)}, event: createGrant(k, gid('a'), "", "Decrypt", "Decrypt"), want: ErrValidation},
		{name: "no operations", setup: []*eventsv1.Envelope{createKey(k)}, event: createGrant(k, gid('a'), ""), want: ErrValidation},
		{name: "short grant ID", setup: []*eventsv1.Envelope{createKey(k)}, event: createGrant(k, "abcd", "", "Decrypt"), want: ErrValidation},
		{name: "grant ID taken", setup: []*eventsv1.Envelope{createKey(k), createGrant(k, gid('a'), "", "Decrypt")},
			event: createGrant(k, gid('a'), "", "Encrypt"), want: ErrAlreadyExists},
		{name: "pending deletion", setup: []*eventsv1.Envelope{createKey(k), schedule(k, 7*day)}, event: createGrant(k, gid('a'), "", "Decrypt"), want: ErrInvalidState},
		{name: "no such key", event: createGrant("nope", gid('a'), "", "Decrypt"), want: ErrNotFound},
		{name: "retire", setup: []*eventsv1.Envelope{createKey(k), createGrant(k, gid('a'), "", "Decrypt"), createGrant(k, gid('b'), "", "Decrypt")},
			event: evg(&eventsv1.RetireGrant{KeyId: k, GrantId: gid('a')}),
			check: func(t *testing.T, h *harness) {
				if gs := h.key(k).Grants; len(gs) != 1 || gs[0].ID != gid('b') {
					t.Fatalf("grants %+v", gs)
				}
			}},
		{name: "revoke", setup: []*eventsv1.Envelope{createKey(k), createGrant(k, gid('a'), "", "Decrypt")},
			event: evg(&eventsv1.RevokeGrant{KeyId: k, GrantId: gid('a')}),
			check: func(t *testing.T, h *harness) {
				if gs := h.key(k).Grants; len(gs) != 0 {
					t.Fatalf("grants %+v", gs)
				}
			}},
		{name: "retire unknown grant", setup: []*eventsv1.Envelope{createKey(k)}, event: evg(&eventsv1.RetireGrant{KeyId: k, GrantId: gid('a')}), want: ErrNotFound},
	})
}

func versionPolicy(k string, n uint32) *eventsv1.Envelope {
	return evg(&eventsv1.UpdateKeyVersionPolicy{KeyId: k, MinDecryptionVersion: n})
}
func destroyVersion(k string, n uint32) *eventsv1.Envelope {
	return evg(&eventsv1.DestroyKeyVersion{KeyId: k, Version: n})
}

func TestVersionControlRules(t *testing.T) {
	const k = "k1"
	three := []*eventsv1.Envelope{createKey(k), rotate(k, onDemand, 1), rotate(k, onDemand, 2)}
	with := func(extra ...*eventsv1.Envelope) []*eventsv1.Envelope {
		return append(append([]*eventsv1.Envelope{}, three...), extra...)
	}
	decryptable := func(want ...bool) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			key := h.key(k)
			for i, w := range want {
				if got := DecryptableVersion(key, uint32(i+1)) == nil; got != w {
					t.Fatalf("version %d decryptable = %v, want %v (%v)", i+1, got, w, DecryptableVersion(key, uint32(i+1)))
				}
			}
		}
	}
	runCases(t, []transitionCase{
		{name: "raise minimum", setup: three, event: versionPolicy(k, 3), check: decryptable(false, false, true)},
		{name: "lower it back", setup: with(versionPolicy(k, 3)), event: versionPolicy(k, 1), check: decryptable(true, true, true)},
		{name: "minimum above current", setup: three, event: versionPolicy(k, 4), want: ErrValidation},
		{name: "minimum zero", setup: three, event: versionPolicy(k, 0), want: ErrValidation},
		{name: "destroy", setup: three, event: destroyVersion(k, 1),
			check: func(t *testing.T, h *harness) {
				decryptable(false, true, true)(t, h)
				v := h.key(k).Version(1)
				if v.Sealed != nil || v.DestroyedAt == 0 || h.key(k).CurrentVersion() != 3 {
					t.Fatalf("version 1 after destroy: %+v", v)
				}
			}},
		{name: "destroy current", setup: three, event: destroyVersion(k, 3), want: ErrValidation},
		{name: "destroy twice", setup: with(destroyVersion(k, 2)), event: destroyVersion(k, 2), want: ErrInvalidState},
		{name: "destroy unknown version", setup: three, event: destroyVersion(k, 9), want: ErrNotFound},
		{name: "cannot lower below a destroyed version", setup: with(versionPolicy(k, 3), destroyVersion(k, 1)), event: versionPolicy(k, 1), want: ErrInvalidState},
		{name: "lower down to just above a destroyed version", setup: with(versionPolicy(k, 3), destroyVersion(k, 1)), event: versionPolicy(k, 2),
			check: decryptable(false, true, true)},
	})
}

// TestGrantsAndVersionsSurviveSnapshot: grants, minimum versions and
// destroyed versions come back from a snapshot with the same digest.
func TestGrantsAndVersionsSurviveSnapshot(t *testing.T) {
	const k = "k1"
	h := newHarness(t)
	for _, e := range []*eventsv1.Envelope{createKey(k), rotate(k, onDemand, 1), rotate(k, onDemand, 2),
		createGrant(k, gid('b'), "n", "Decrypt"), createGrant(k, gid('a'), "", "Encrypt", "GenerateDataKey"),
		versionPolicy(k, 2), destroyVersion(k, 1)} {
		h.ok(e)
	}
	snap := snapshotBytes(t, h.f)
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != h.f.Digest() {
		t.Fatal("digest differs after restore")
	}
	if again := snapshotBytes(t, g); !bytes.Equal(again, snap) {
		t.Fatal("snapshot bytes differ after restore")
	}
	key, _ := g.Key(k)
	if len(key.Grants) != 2 || key.Grants[0].ID != gid('a') || key.MinDecryptionVersion != 2 || key.Versions[0].DestroyedAt == 0 ||
		key.Versions[0].Sealed != nil || key.Grants[1].ECSubset[0].Key != "dept" {
		t.Fatalf("restored key %+v", key)
	}
}

// TestRandomLogReachesGrantsAndVersions: the determinism tests' random log
// leaves grants, a minimum decryption version and destroyed versions in
// the state, so those tests cover them.
func TestRandomLogReachesGrantsAndVersions(t *testing.T) {
	f := applyAll(t, randomLog(t, 1, 3000))
	var grants, mins, destroyed int
	f.ForEachKey(func(k *Key) bool {
		grants += len(k.Grants)
		if k.MinDecryptionVersion > 1 {
			mins++
		}
		for _, v := range k.Versions {
			if v.DestroyedAt != 0 {
				destroyed++
			}
		}
		return true
	})
	if grants == 0 || mins == 0 || destroyed == 0 {
		t.Fatalf("random log left %d grants, %d raised minimums, %d destroyed versions", grants, mins, destroyed)
	}
}

// TestDestroyedImportedVersionStaysDestroyed: re-importing the same material
// does not bring a destroyed version back.
func TestDestroyedImportedVersionStaysDestroyed(t *testing.T) {
	const k = "x1"
	h := newHarness(t)
	h.ok(createExternal(k))
	h.ok(importParams(k, "tok"))
	h.ok(importMat(k, "tok", existing, 1, "fp1", 0))
	h.ok(importParams(k, "tok2"))
	h.ok(importMat(k, "tok2", newMat, 2, "fp2", 0))
	h.ok(evg(&eventsv1.DestroyKeyVersion{KeyId: k, Version: 1}))
	h.ok(importParams(k, "tok3"))
	h.refused(importMat(k, "tok3", existing, 1, "fp1", 0), reject(CodeInvalidState, "destroyed"))
	if v := h.key(k).Version(1); v.Sealed != nil {
		t.Fatal("destroyed version has material again")
	}
}

func enableRotMax(id string, s int64, limit uint32) *eventsv1.Envelope {
	return evg(&eventsv1.EnableKeyRotation{KeyId: id, RotationPeriodSeconds: s, MaxDecryptionVersions: limit})
}
func retire(k string, n, expected uint32) *eventsv1.Envelope {
	return evg(&eventsv1.UpdateKeyVersionPolicy{KeyId: k, MinDecryptionVersion: n, Automatic: true, ExpectedCurrentVersion: expected})
}

// TestAutomaticRetirementRules: the scheduler's UpdateKeyVersionPolicy
// applies only as RetireDue asks, and an operator cannot lower the minimum
// past the key's limit.
func TestAutomaticRetirementRules(t *testing.T) {
	const k = "k1"
	four := []*eventsv1.Envelope{createKey(k), enableRotMax(k, 86400, 2), rotate(k, onDemand, 1), rotate(k, onDemand, 2), rotate(k, onDemand, 3)}
	with := func(extra ...*eventsv1.Envelope) []*eventsv1.Envelope {
		return append(append([]*eventsv1.Envelope{}, four...), extra...)
	}
	minIs := func(want uint32) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			key := h.key(k)
			if key.MinDecryptionVersion != want {
				t.Fatalf("minimum decryption version %d, want %d", key.MinDecryptionVersion, want)
			}
			if _, due := RetireDue(key); due {
				t.Fatal("RetireDue still asks for a retirement after it applied")
			}
			for n := uint32(1); n <= key.CurrentVersion(); n++ {
				if got := DecryptableVersion(key, n) == nil; got != (n >= want) {
					t.Fatalf("version %d decryptable = %v", n, got)
				}
				if key.Version(n).Sealed == nil {
					t.Fatalf("retiring destroyed version %d", n)
				}
			}
		}
	}
	runCases(t, []transitionCase{
		{name: "limit is kept in the state", setup: four[:1], event: enableRotMax(k, 86400, 2),
			check: func(t *testing.T, h *harness) {
				if h.key(k).Rotation.MaxDecryptionVersions != 2 {
					t.Fatalf("rotation %+v", h.key(k).Rotation)
				}
			}},
		{name: "retire to the limit", setup: four, event: retire(k, 3, 4), check: minIs(3)},
		{name: "stale version guard", setup: four, event: retire(k, 3, 3), want: ErrConflict},
		{name: "wrong minimum", setup: four, event: retire(k, 2, 4), want: ErrConflict},
		{name: "nothing to retire", setup: with(retire(k, 3, 4)), event: retire(k, 3, 4), want: ErrConflict},
		{name: "limit cleared", setup: with(enableRotMax(k, 86400, 0)), event: retire(k, 3, 4), want: ErrConflict},
		{name: "rotation off", setup: with(disableRot(k)), event: retire(k, 3, 4), want: ErrConflict},
		{name: "operator cannot lower past the limit", setup: with(retire(k, 3, 4)), event: versionPolicy(k, 1), want: ErrValidation},
		{name: "operator may lower within the limit", setup: with(versionPolicy(k, 4)), event: versionPolicy(k, 3), check: minIs(3)},
		{name: "operator may raise", setup: four, event: versionPolicy(k, 2),
			check: func(t *testing.T, h *harness) {
				if m, ok := RetireDue(h.key(k)); !ok || m != 3 {
					t.Fatalf("RetireDue after a partial raise = %d, %v", m, ok)
				}
			}},
	})
}
