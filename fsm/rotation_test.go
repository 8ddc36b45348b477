package fsm

import (
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

const day = 86400

func TestRotationRules(t *testing.T) {
	const k = "k1"
	t0 := int64(1_700_000_000) * sec
	runCases(t, []transitionCase{
		{name: "off by default", event: createKey(k), check: func(t *testing.T, h *harness) {
			if h.key(k).Rotation.Enabled {
				t.Fatal("rotation on by default")
			}
		}},
		{name: "enable sets next = enabled + period", setup: []*eventsv1.Envelope{createKey(k)}, event: enableRot(k, 365*day),
			check: func(t *testing.T, h *harness) {
				r := h.key(k).Rotation
				if !r.Enabled || r.NextRotation != h.now+365*day*sec {
					t.Fatalf("rotation %+v, now %d", r, h.now)
				}
			}},
		{name: "changing period keeps the base", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 365*day)}, event: enableRot(k, 90*day),
			check: func(t *testing.T, h *harness) {
				r := h.key(k).Rotation
				if r.NextRotation != r.LastRotation+90*day*sec || r.LastRotation != t0+sec {
					t.Fatalf("rotation %+v", r)
				}
			}},
		{name: "enable rotation of disabled key", setup: []*eventsv1.Envelope{createKey(k), disable(k)}, event: enableRot(k, 365*day), want: ErrDisabled},
		{name: "enable rotation of pending deletion", setup: []*eventsv1.Envelope{createKey(k), schedule(k, 7*day)}, event: enableRot(k, 365*day), want: ErrInvalidState},
		{name: "enable rotation bad period", setup: []*eventsv1.Envelope{createKey(k)}, event: enableRot(k, 0), want: ErrValidation},
		{name: "enable rotation of imported key", setup: []*eventsv1.Envelope{createExternal(k)}, event: enableRot(k, 365*day), want: ErrUnsupported},
		{name: "enable rotation of managed key", setup: []*eventsv1.Envelope{createManaged(k)}, event: enableRot(k, 365*day), want: ErrUnsupported},
		{name: "disable rotation of managed key", setup: []*eventsv1.Envelope{createManaged(k)}, event: disableRot(k), want: ErrUnsupported},
		{name: "disable rotation", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 365*day)}, event: disableRot(k),
			check: func(t *testing.T, h *harness) {
				if h.key(k).Rotation.Enabled {
					t.Fatal("still enabled")
				}
			}},

		{name: "on demand adds a version", setup: []*eventsv1.Envelope{createKey(k)}, event: rotate(k, onDemand, 1),
			check: func(t *testing.T, h *harness) {
				key := h.key(k)
				if key.CurrentVersion() != 2 || key.Versions[1].Type != onDemand || string(key.Versions[1].Sealed) != string(mat(k, 2)) {
					t.Fatalf("versions %+v", key.Versions)
				}
			}},
		{name: "on demand does not move the schedule", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 90*day)}, event: rotate(k, onDemand, 1),
			check: func(t *testing.T, h *harness) {
				if r := h.key(k).Rotation; r.NextRotation != t0+sec+90*day*sec {
					t.Fatalf("schedule moved: %+v", r)
				}
			}},
		{name: "on demand stale expected version", setup: []*eventsv1.Envelope{createKey(k), rotate(k, onDemand, 1)}, event: rotate(k, onDemand, 1), want: ErrConflict},
		{name: "on demand limit", setup: onDemandTimes(k, 10), event: rotate(k, onDemand, 11), want: ErrLimitExceeded},
		{name: "on demand of imported key", setup: []*eventsv1.Envelope{createExternal(k)}, event: rotate(k, onDemand, 0), want: ErrUnsupported},
		{name: "on demand of managed key", setup: []*eventsv1.Envelope{createManaged(k)}, event: rotate(k, onDemand, 1), want: ErrUnsupported},
		{name: "disabled key is not rotated", setup: []*eventsv1.Envelope{createKey(k), disable(k)}, event: rotate(k, onDemand, 1), want: ErrDisabled},
		{name: "pending deletion key is not rotated", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 1), schedule(k, 7*day)},
			event: rotateAt(k, automatic, 1, t0+10*sec), want: ErrInvalidState},
		{name: "pending import key is not rotated", setup: []*eventsv1.Envelope{createExternal(k)}, event: rotate(k, automatic, 0), want: ErrUnsupported},
		{name: "rotation type must be proposable", setup: []*eventsv1.Envelope{createKey(k)}, event: rotate(k, eventsv1.RotationType_ROTATION_TYPE_IMPORTED, 1), want: ErrValidation},

		{name: "automatic when due", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 10)}, event: rotateAt(k, automatic, 1, t0+11*sec),
			check: func(t *testing.T, h *harness) {
				key := h.key(k)
				if key.CurrentVersion() != 2 || key.Versions[1].Type != automatic {
					t.Fatal("not rotated")
				}
				if key.Rotation.LastRotation != t0+11*sec || key.Rotation.NextRotation != t0+21*sec {
					t.Fatalf("schedule %+v", key.Rotation)
				}
			}},
		{name: "automatic before due", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 10)}, event: rotateAt(k, automatic, 1, t0+5*sec), want: ErrConflict},
		{name: "automatic twice applies once", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 10), rotateAt(k, automatic, 1, t0+11*sec)},
			event: rotateAt(k, automatic, 1, t0+12*sec), want: ErrConflict},
		{name: "automatic after rotation switched off", setup: []*eventsv1.Envelope{createKey(k), enableRot(k, 10), disableRot(k)},
			event: rotateAt(k, automatic, 1, t0+20*sec), want: ErrConflict},
		// The clock reaches a year on only through entries (MaxClockStep).
		{name: "automatic of managed key", setup: []*eventsv1.Envelope{createManaged(k)}, wait: 366 * day * sec, event: rotate(k, automatic, 1)},
		{name: "managed key not due on one far-future stamp", setup: []*eventsv1.Envelope{createManaged(k)},
			event: rotateAt(k, automatic, 1, t0+366*day*sec), want: ErrConflict},
	})
}

func onDemandTimes(k string, n int) []*eventsv1.Envelope {
	out := []*eventsv1.Envelope{createKey(k)}
	for i := 1; i <= n; i++ {
		out = append(out, rotate(k, onDemand, uint32(i)))
	}
	return out
}

func rotateAt(k string, typ RotationType, expected uint32, at int64) *eventsv1.Envelope {
	env := rotate(k, typ, expected)
	env.TimeUnixNano = at
	return env
}

// A disabled key keeps its rotation setting; enabled again after a full
// period it is due at once, within the period the old plan stands.
func TestEnableAfterDisableRotationPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		enableAt  int64 // seconds after rotation was enabled
		wantDueAt int64 // NextRotation, seconds after rotation was enabled
	}{
		{"overdue rotates at once", 150, 100},
		{"within period keeps plan", 50, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			t0 := h.now
			h.ok(createKey("k"))
			h.ok(enableRot("k", 100))
			h.ok(disable("k"))
			h.now = t0 + tc.enableAt*sec
			h.ok(enable("k"))
			k := h.key("k")
			if !k.Rotation.Enabled || k.Rotation.NextRotation != t0+tc.wantDueAt*sec {
				t.Fatalf("rotation %+v", k.Rotation)
			}
			due := k.Rotation.NextRotation <= h.f.Clock()
			if due != (tc.enableAt >= 100) {
				t.Fatalf("due now = %v", due)
			}
			// The scheduler's rotation at the state's clock applies exactly when due.
			r := h.apply(rotateAt("k", automatic, 1, h.f.Clock()))
			if (r.Err == nil) != due {
				t.Fatalf("automatic rotation at enable time: %v", r.Err)
			}
		})
	}
}

// Cancelling a deletion leaves the key Disabled with its rotation setting
// restored; enabling it then follows the rule above.
func TestCancelDeletionRestoresRotation(t *testing.T) {
	h := newHarness(t)
	t0 := h.now
	h.ok(createKey("k"))
	h.ok(enableRot("k", 100))
	h.ok(schedule("k", 7*day))
	h.now = t0 + 200*sec
	h.refused(rotateAt("k", automatic, 1, h.now), ErrInvalidState)
	h.ok(cancelDel("k"))
	k := h.key("k")
	if k.State != stDisabled || !k.Rotation.Enabled || k.Rotation.PeriodSec != 100 || k.Rotation.NextRotation != t0+100*sec {
		t.Fatalf("after cancel: %s %+v", stateName(k.State), k.Rotation)
	}
	h.ok(enable("k"))
	h.ok(rotateAt("k", automatic, 1, h.now))
	if h.key("k").CurrentVersion() != 2 {
		t.Fatal("overdue key not rotated after enable")
	}
}

func TestImportLifecycle(t *testing.T) {
	h := newHarness(t)
	const k = "ext"
	h.ok(createExternal(k))
	h.refused(importMat(k, "tok", existing, 1, "fp1", 0), ErrInvalidImportToken)
	h.ok(importParams(k, "tok"))
	h.refused(importMat(k, "other", existing, 1, "fp1", 0), ErrInvalidImportToken)
	h.refused(importMat(k, "tok", existing, 2, "fp1", 0), ErrConflict)
	validTo := h.now + 100*sec
	h.ok(importMat(k, "tok", existing, 1, "fp1", validTo))
	if h.state(k) != stEnabled || h.key(k).CurrentVersion() != 1 {
		t.Fatal("first import did not enable version 1")
	}
	// New material adds a version; the same material is refused as new.
	h.refused(importMat(k, "tok", newMat, 2, "fp1", validTo), ErrIncorrectKeyMaterial)
	h.ok(importMat(k, "tok", newMat, 2, "fp2", validTo))
	if v := h.key(k).Version(2); v == nil || v.Type != eventsv1.RotationType_ROTATION_TYPE_IMPORTED {
		t.Fatal("new material is not an IMPORTED version")
	}
	// Expiry: refused early or with a stale guard, then the key waits for import.
	h.refused(ev(&eventsv1.ExpireKeyMaterial{KeyId: k, ExpectedValidToUnixNano: validTo}), ErrConflict)
	h.now = validTo
	h.refused(ev(&eventsv1.ExpireKeyMaterial{KeyId: k, ExpectedValidToUnixNano: validTo + 1}), ErrConflict)
	h.ok(ev(&eventsv1.ExpireKeyMaterial{KeyId: k, ExpectedValidToUnixNano: validTo}))
	if h.state(k) != stPendingImport || h.key(k).HasMaterial() {
		t.Fatal("expired key still usable")
	}
	// Re-import must be the same material.
	h.refused(importMat(k, "tok", existing, 2, "fp-other", 0), ErrIncorrectKeyMaterial)
	h.ok(importMat(k, "tok", existing, 2, "fp2", 0))
	h.ok(importMat(k, "tok", existing, 1, "fp1", 0))
	if h.state(k) != stEnabled || len(h.key(k).Versions[0].Sealed) == 0 {
		t.Fatal("re-import did not restore the key")
	}
	h.ok(ev(&eventsv1.DeleteImportedKeyMaterial{KeyId: k}))
	if h.state(k) != stPendingImport {
		t.Fatal("delete imported material did not make the key pending import")
	}
	// The token expires 24 h after it was made.
	h.advance(2 * day * sec)
	h.refused(importMat(k, "tok", existing, 2, "fp2", 0), ErrExpiredImportToken)
	// Only EXTERNAL keys take import events.
	h.ok(createKey("gen"))
	h.refused(importParams("gen", "t2"), ErrUnsupported)
	h.refused(ev(&eventsv1.DeleteImportedKeyMaterial{KeyId: "gen"}), ErrUnsupported)
}
