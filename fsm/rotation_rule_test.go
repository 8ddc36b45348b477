package fsm

import "testing"

// TestRotationDue is the table of the one rotation rule that both the
// scheduler (rotation.due) and apply (applyRotateKey) use. It includes
// states the API cannot reach (an imported or asymmetric key with rotation
// on) so that the rule, not the API's guards, is what is checked.
func TestRotationDue(t *testing.T) {
	v1 := []Version{{Number: 1, Sealed: []byte("m")}}
	rot := Rotation{Enabled: true, PeriodSec: 10, LastRotation: 40, NextRotation: 50}
	cases := []struct {
		name string
		key  Key
		at   int64
		ok   bool
	}{
		{"enabled with rotation", Key{State: KeyStateEnabled, Versions: v1, Rotation: rot}, 50, true},
		{"explicit symmetric spec", Key{State: KeyStateEnabled, KeySpec: DefaultKeySpec, Versions: v1, Rotation: rot}, 50, true},
		{"managed key", Key{Origin: OriginService, State: KeyStateEnabled, Versions: v1, Rotation: rot}, 50, true},
		{"rotation off", Key{State: KeyStateEnabled, Versions: v1}, 0, false},
		{"rotation off keeps no plan", Key{State: KeyStateEnabled, Versions: v1, Rotation: Rotation{PeriodSec: 10, NextRotation: 50}}, 0, false},
		{"disabled", Key{State: KeyStateDisabled, Versions: v1, Rotation: rot}, 0, false},
		{"pending deletion", Key{State: KeyStatePendingDeletion, DeletionAt: 70, Versions: v1, Rotation: rot}, 0, false},
		{"deleted", Key{State: KeyStateDeleted, Versions: v1, Rotation: rot}, 0, false},
		{"pending import", Key{State: KeyStatePendingImport, Rotation: rot}, 0, false},
		{"imported with rotation on", Key{Origin: OriginExternal, State: KeyStateEnabled, Versions: v1, Rotation: rot}, 0, false},
		{"asymmetric with rotation on", Key{State: KeyStateEnabled, KeySpec: "RSA_2048", Versions: v1, Rotation: rot}, 0, false},
		{"no version", Key{State: KeyStateEnabled, Rotation: rot}, 0, false},
		{"no plan", Key{State: KeyStateEnabled, Versions: v1, Rotation: Rotation{Enabled: true, PeriodSec: 10}}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := RotationDue(&tc.key)
			if ok != tc.ok || at != tc.at {
				t.Fatalf("RotationDue = %d, %v; want %d, %v", at, ok, tc.at, tc.ok)
			}
		})
	}
}

// TestApplyFollowsRotationDue checks that apply accepts an automatic
// rotation exactly when RotationDue says the key is due at the entry's time.
func TestApplyFollowsRotationDue(t *testing.T) {
	const k = "k1"
	h := newHarness(t)
	h.ok(createKey(k))
	h.ok(enableRot(k, 100))
	at, ok := RotationDue(h.key(k))
	if !ok {
		t.Fatal("key with rotation on is not on a schedule")
	}
	h.advance(at - max(h.now, h.f.Clock()) - sec) // one second early
	h.refused(rotate(k, automatic, 1), reject(CodeConflict, "key %s is not due for rotation", k))
	h.advance(sec)
	h.ok(rotate(k, automatic, 1))
	if next, ok := RotationDue(h.key(k)); !ok || next != h.now+100*sec {
		t.Fatalf("after rotation RotationDue = %d, %v; want %d", next, ok, h.now+100*sec)
	}
	h.ok(disable(k))
	h.advance(200 * sec)
	if _, ok := RotationDue(h.key(k)); ok {
		t.Fatal("disabled key is due")
	}
	h.refused(rotate(k, automatic, 2), reject(CodeDisabled, "key %s is disabled", k))
}

// TestRetireDue is the table of the one retirement rule that both the
// scheduler (rotation.due, KindRetire) and apply (an automatic
// UpdateKeyVersionPolicy) use.
func TestRetireDue(t *testing.T) {
	vs := func(destroyed ...uint32) []Version {
		out := make([]Version, 5)
		for i := range out {
			out[i] = Version{Number: uint32(i + 1), Sealed: []byte("m")}
		}
		for _, n := range destroyed {
			out[n-1].Sealed, out[n-1].DestroyedAt = nil, 1
		}
		return out
	}
	rot := func(limit uint32) Rotation {
		return Rotation{Enabled: true, PeriodSec: 10, LastRotation: 40, NextRotation: 50, MaxDecryptionVersions: limit}
	}
	cases := []struct {
		name string
		key  Key
		min  uint32
		ok   bool
	}{
		{"unlimited", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(0)}, 0, false},
		{"five versions, keep two", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(2)}, 4, true},
		{"five versions, keep one", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(1)}, 5, true},
		{"exactly at the limit", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(5)}, 0, false},
		{"under the limit", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(9)}, 0, false},
		{"already retired", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(2), MinDecryptionVersion: 4}, 0, false},
		{"partly retired", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(2), MinDecryptionVersion: 2}, 4, true},
		{"minimum one means all", Key{State: KeyStateEnabled, Versions: vs(), Rotation: rot(3), MinDecryptionVersion: 1}, 3, true},
		{"destroyed versions do not count", Key{State: KeyStateEnabled, Versions: vs(1, 2), Rotation: rot(3)}, 0, false},
		{"the kept versions skip a destroyed one", Key{State: KeyStateEnabled, Versions: vs(4), Rotation: rot(2)}, 3, true},
		{"kept start above a destroyed one", Key{State: KeyStateEnabled, Versions: vs(3), Rotation: rot(2)}, 4, true},
		{"only destroyed ones below the kept", Key{State: KeyStateEnabled, Versions: vs(1, 2, 3), Rotation: rot(2)}, 0, false},
		{"rotation off", Key{State: KeyStateEnabled, Versions: vs(), Rotation: Rotation{MaxDecryptionVersions: 2}}, 0, false},
		{"disabled", Key{State: KeyStateDisabled, Versions: vs(), Rotation: rot(2)}, 0, false},
		{"pending deletion", Key{State: KeyStatePendingDeletion, Versions: vs(), Rotation: rot(2)}, 0, false},
		{"imported", Key{Origin: OriginExternal, State: KeyStateEnabled, Versions: vs(), Rotation: rot(2)}, 0, false},
		{"asymmetric", Key{State: KeyStateEnabled, KeySpec: "RSA_2048", Versions: vs(), Rotation: rot(2)}, 0, false},
		{"no version", Key{State: KeyStateEnabled, Rotation: rot(2)}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			min, ok := RetireDue(&tc.key)
			if ok != tc.ok || min != tc.min {
				t.Fatalf("RetireDue = %d, %v; want %d, %v", min, ok, tc.min, tc.ok)
			}
		})
	}
}
