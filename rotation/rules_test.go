package rotation

import (
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// step is one action of a rule scenario: apply an event (which must
// succeed), move the clock, then — after the scheduler settles — check the key.
type step struct {
	event   func(h *harness, id string) *eventsv1.Envelope
	advance time.Duration
	check   func(t *testing.T, h *harness, k *fsm.Key)
}

func do(fn func(id string) *eventsv1.Envelope) step {
	return step{event: func(_ *harness, id string) *eventsv1.Envelope { return fn(id) }}
}
func wait(s int64) step { return step{advance: time.Duration(s) * time.Second} }
func expect(fn func(t *testing.T, h *harness, k *fsm.Key)) step {
	return step{check: fn}
}

func versions(n int) step {
	return expect(func(t *testing.T, _ *harness, k *fsm.Key) { checkVersions(t, k, n) })
}

func state(s fsm.KeyState) step {
	return expect(func(t *testing.T, _ *harness, k *fsm.Key) {
		if k.State != s {
			t.Fatalf("key is %s, want %s", fsm.StateName(k.State), fsm.StateName(s))
		}
	})
}

// nextIn checks that the next rotation is planned d seconds from now.
func nextIn(d int64) step {
	return expect(func(t *testing.T, h *harness, k *fsm.Key) {
		if want := h.now() + d*sec; k.Rotation.NextRotation != want {
			t.Fatalf("next rotation at %+d s, want %+d s", (k.Rotation.NextRotation-h.now())/sec, d)
		}
	})
}

// minDecryption checks the key's minimum decryption version, and that
// retiring never destroyed material.
func minDecryption(n uint32) step {
	return expect(func(t *testing.T, _ *harness, k *fsm.Key) {
		if k.MinDecryptionVersion != n {
			t.Fatalf("minimum decryption version %d, want %d", k.MinDecryptionVersion, n)
		}
		for _, v := range k.Versions {
			if v.DestroyedAt != 0 || v.Sealed == nil {
				t.Fatalf("version %d lost its material", v.Number)
			}
		}
	})
}

func TestRules(t *testing.T) {
	with := func(periodSec int64) func(id string) *eventsv1.Envelope {
		return func(id string) *eventsv1.Envelope { return enableRot(id, periodSec) }
	}
	withMax := func(periodSec int64, limit uint32) func(id string) *eventsv1.Envelope {
		return func(id string) *eventsv1.Envelope {
			env := enableRot(id, periodSec)
			env.GetEnableKeyRotation().MaxDecryptionVersions = limit
			return env
		}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"rotates when due, versions contiguous and AUTOMATIC", []step{
			do(createKey), do(with(100)),
			wait(99), versions(1),
			wait(1), versions(2), nextIn(100),
			wait(100), versions(3), nextIn(100),
		}},
		{"overdue by several periods rotates once, then per period", []step{
			do(createKey), do(with(100)),
			wait(350), versions(2), nextIn(100),
		}},
		{"rotation off: never rotated", []step{
			do(createKey), do(with(100)), do(disableRot),
			wait(1000), versions(1),
		}},
		{"managed (SERVICE) key rotates by its own period", []step{
			do(func(id string) *eventsv1.Envelope { return createManaged(id, 100) }),
			wait(99), versions(1),
			wait(1), versions(2),
		}},
		{"disabled key not rotated; enabled when overdue: rotated at once", []step{
			do(createKey), do(with(100)), do(disableKey),
			wait(250), versions(1), state(fsm.KeyStateDisabled),
			do(enableKey), versions(2), nextIn(100),
		}},
		{"disabled key enabled within its period keeps the old plan", []step{
			do(createKey), do(with(100)),
			wait(30), do(disableKey),
			wait(30), do(enableKey), versions(1), nextIn(40),
			wait(39), versions(1),
			wait(1), versions(2),
		}},
		{"pending deletion not rotated; cancel leaves it disabled with rotation kept", []step{
			do(createKey), do(with(100)), do(func(id string) *eventsv1.Envelope { return scheduleDeletion(id, 1000) }),
			wait(200), versions(1), state(fsm.KeyStatePendingDeletion),
			do(cancelDeletion), state(fsm.KeyStateDisabled), versions(1),
			expect(func(t *testing.T, _ *harness, k *fsm.Key) {
				if !k.Rotation.Enabled {
					t.Fatal("rotation setting lost")
				}
			}),
			do(enableKey), versions(2), nextIn(100),
		}},
		{"period change makes an overdue key rotate at once", []step{
			do(createKey), do(with(1000)),
			wait(200), versions(1),
			do(with(100)), versions(2), nextIn(100),
		}},
		{"versions beyond the limit retired after each rotation, by events, never destroyed", []step{
			do(createKey), do(withMax(100, 2)),
			wait(100), versions(2), minDecryption(0),
			wait(100), versions(3), minDecryption(2),
			wait(100), versions(4), minDecryption(3),
			expect(func(t *testing.T, _ *harness, k *fsm.Key) {
				if n := countEvents(k, "UpdateKeyVersionPolicy"); n != 2 {
					t.Fatalf("%d UpdateKeyVersionPolicy events, want 2", n)
				}
			}),
		}},
		{"a lower limit retires at once; no limit retires nothing", []step{
			do(createKey), do(with(100)),
			wait(100), wait(100), wait(100), versions(4), minDecryption(0),
			do(withMax(100, 1)), minDecryption(4),
		}},
		{"deletion proposed at the end of the waiting period", []step{
			do(createKey), do(func(id string) *eventsv1.Envelope { return scheduleDeletion(id, 300) }),
			wait(299), state(fsm.KeyStatePendingDeletion),
			wait(1), state(fsm.KeyStateDeleted),
			expect(func(t *testing.T, _ *harness, k *fsm.Key) {
				if k.HasMaterial() || countEvents(k, "DeleteKey") != 1 {
					t.Fatalf("material %v, DeleteKey events %d", k.HasMaterial(), countEvents(k, "DeleteKey"))
				}
			}),
		}},
		{"rescheduled deletion follows the new time, not the old", []step{
			do(createKey), do(func(id string) *eventsv1.Envelope { return scheduleDeletion(id, 300) }),
			wait(100), do(cancelDeletion), do(func(id string) *eventsv1.Envelope { return scheduleDeletion(id, 300) }),
			wait(250), state(fsm.KeyStatePendingDeletion),
			wait(50), state(fsm.KeyStateDeleted),
		}},
		{"imported material expires at ValidTo", []step{
			do(createExternal), do(importParams),
			{event: func(h *harness, id string) *eventsv1.Envelope { return importMaterial(id, h.now()+500*sec) }},
			state(fsm.KeyStateEnabled),
			wait(499), state(fsm.KeyStateEnabled),
			wait(1), state(fsm.KeyStatePendingImport),
			expect(func(t *testing.T, _ *harness, k *fsm.Key) {
				if k.HasMaterial() || countEvents(k, "ExpireKeyMaterial") != 1 {
					t.Fatalf("material %v, ExpireKeyMaterial events %d", k.HasMaterial(), countEvents(k, "ExpireKeyMaterial"))
				}
			}),
		}},
		{"imported key pending deletion: material expires, then the key is deleted", []step{
			do(createExternal), do(importParams),
			{event: func(h *harness, id string) *eventsv1.Envelope { return importMaterial(id, h.now()+100*sec) }},
			do(func(id string) *eventsv1.Envelope { return scheduleDeletion(id, 300) }),
			wait(100), state(fsm.KeyStatePendingDeletion),
			expect(func(t *testing.T, _ *harness, k *fsm.Key) {
				if k.HasMaterial() {
					t.Fatal("material did not expire")
				}
			}),
			wait(200), state(fsm.KeyStateDeleted),
		}},
		{"imported (EXTERNAL) key never rotated nor expired without an expiry", []step{
			do(createExternal), do(importParams),
			do(func(id string) *eventsv1.Envelope { return importMaterial(id, 0) }),
			wait(10 * 365 * 86400), state(fsm.KeyStateEnabled), versions(1),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			n := h.start()
			const id = "key-1"
			for i, st := range tc.steps {
				if st.event != nil {
					if r := h.apply(st.event(h, id)); r.Err != nil {
						t.Fatalf("step %d: rejected: %v", i, r.Err)
					}
				}
				h.advance(st.advance)
				h.settle(n)
				if st.check != nil {
					st.check(t, h, h.key(id))
				}
			}
			if st := n.s.Stats(); st.Ambiguous+st.NotApplied+st.MaterialErrors != 0 || len(st.Rejected) != 0 {
				t.Fatalf("unexpected failures: %+v", st)
			}
		})
	}
}

// TestDue checks the scheduler's view of each kind of change. When a key is
// due for rotation is fsm.RotationDue's rule, tabled in fsm; here only that
// the scheduler asks it and guards with the current version.
func TestDue(t *testing.T) {
	v1 := []fsm.Version{{Number: 1, Sealed: []byte("m")}}
	expires := eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES
	rot := fsm.Rotation{Enabled: true, PeriodSec: 10, NextRotation: 50}
	cases := []struct {
		name  string
		key   fsm.Key
		kind  Kind
		at    int64
		guard int64
		ok    bool
	}{
		{"rotation", fsm.Key{State: fsm.KeyStateEnabled, Versions: v1, Rotation: rot}, KindRotate, 50, 1, true},
		{"rotation guards the current version", fsm.Key{State: fsm.KeyStateEnabled, Versions: append(v1, fsm.Version{Number: 2}), Rotation: rot}, KindRotate, 50, 2, true},
		{"no rotation when disabled", fsm.Key{State: fsm.KeyStateDisabled, Versions: v1, Rotation: rot}, KindRotate, 0, 0, false},
		{"deletion", fsm.Key{State: fsm.KeyStatePendingDeletion, DeletionAt: 70, Versions: v1}, KindDelete, 70, 70, true},
		{"no deletion when enabled", fsm.Key{State: fsm.KeyStateEnabled, Versions: v1}, KindDelete, 0, 0, false},
		{"expiry", fsm.Key{Origin: fsm.OriginExternal, State: fsm.KeyStateEnabled, Versions: v1, Expiration: expires, ValidTo: 90}, KindExpire, 90, 90, true},
		{"expiry of a disabled key", fsm.Key{Origin: fsm.OriginExternal, State: fsm.KeyStateDisabled, Versions: v1, Expiration: expires, ValidTo: 90}, KindExpire, 90, 90, true},
		{"no expiry without material", fsm.Key{Origin: fsm.OriginExternal, State: fsm.KeyStatePendingImport,
			Versions: []fsm.Version{{Number: 1}}, Expiration: expires, ValidTo: 90}, KindExpire, 0, 0, false},
		{"no expiry of generated keys", fsm.Key{State: fsm.KeyStateEnabled, Versions: v1, Expiration: expires, ValidTo: 90}, KindExpire, 0, 0, false},
		{"retire", fsm.Key{State: fsm.KeyStateEnabled, Versions: []fsm.Version{{Number: 1}, {Number: 2}, {Number: 3}},
			Rotation: fsm.Rotation{Enabled: true, PeriodSec: 10, NextRotation: 50, MaxDecryptionVersions: 2},
			History:  []fsm.HistoryEntry{{Time: 7}, {Time: 30}}}, KindRetire, 30, 2, true},
		{"no retirement within the limit", fsm.Key{State: fsm.KeyStateEnabled, Versions: []fsm.Version{{Number: 1}, {Number: 2}},
			Rotation: fsm.Rotation{Enabled: true, PeriodSec: 10, NextRotation: 50, MaxDecryptionVersions: 2}}, KindRetire, 0, 0, false},
		{"no expiry of deleted keys", fsm.Key{Origin: fsm.OriginExternal, State: fsm.KeyStateDeleted, Versions: v1, Expiration: expires, ValidTo: 90}, KindExpire, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, guard, ok := due(&tc.key, tc.kind)
			if ok != tc.ok || at != tc.at || guard != tc.guard {
				t.Fatalf("due = %d, %d, %v; want %d, %d, %v", at, guard, ok, tc.at, tc.guard, tc.ok)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	cases := []struct {
		kind  Kind
		guard int64
		hist  int
		retry int
		want  string
	}{
		{KindRotate, 3, 7, 0, "rotate/k/3/7"},
		{KindRotate, 3, 7, 2, "rotate/k/3/7/retry2"},
		{KindDelete, 1700000300000000000, 4, 0, "delete/k/1700000300000000000/4"},
		{KindExpire, 42, 5, 1, "expire/k/42/5/retry1"},
	}
	for _, tc := range cases {
		if got := RequestID(tc.kind, "k", tc.guard, tc.hist, tc.retry); got != tc.want {
			t.Errorf("RequestID = %q, want %q", got, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	h := newHarness(t)
	p := &fakeProposer{log: h.log}
	good := Config{Proposer: p, Leadership: newFakeLeader(false), State: h.state,
		NewMaterial: func(string, uint32) ([]byte, error) { return []byte("m"), nil }}
	for name, mutate := range map[string]func(*Config){
		"no proposer":      func(c *Config) { c.Proposer = nil },
		"no leadership":    func(c *Config) { c.Leadership = nil },
		"no state":         func(c *Config) { c.State = nil },
		"no material":      func(c *Config) { c.NewMaterial = nil },
		"negative limit":   func(c *Config) { c.MaxInFlight = -1 },
		"negative backoff": func(c *Config) { c.RetryBackoff = -time.Second },
		"negative rate":    func(c *Config) { c.RotationRate = -1 },
		"batch too large":  func(c *Config) { c.BatchSize = fsm.MaxRotateBatch + 1 },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	s, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxInFlight != DefaultMaxInFlight || s.cfg.Tick != DefaultTick || s.cfg.Now == nil ||
		s.cfg.BatchSize != DefaultBatchSize || s.cfg.RotationRate != DefaultRotationRate || s.cfg.MinBatch != DefaultMinBatch {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}
