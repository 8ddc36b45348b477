package fsm

import (
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func TestEveryEventHasHandler(t *testing.T) {
	fields := eventOneof.Fields()
	if fields.Len() == 0 {
		t.Fatal("envelope has no events")
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if _, ok := handlers[fd.Number()]; !ok {
			t.Errorf("event %s has no handler", fd.Name())
		}
	}
	if len(handlers) != fields.Len() {
		t.Errorf("%d handlers for %d events", len(handlers), fields.Len())
	}
}

// Each case runs setup (events that must apply), then the event under test,
// which must be refused with want (state unchanged) or applied and checked.
type transitionCase struct {
	name  string
	setup []*eventsv1.Envelope
	event *eventsv1.Envelope
	want  *Rejection // nil: must apply
	state KeyState   // key state after, when want is nil (0: not checked)
	wait  int64      // moves the state clock this far (harness.advance) after setup
	check func(t *testing.T, h *harness)
}

func runCases(t *testing.T, cases []transitionCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for _, s := range tc.setup {
				h.ok(s)
				h.now += sec
			}
			if tc.wait > 0 {
				h.advance(tc.wait)
			}
			if tc.want != nil {
				h.refused(tc.event, tc.want)
				return
			}
			r := h.ok(tc.event)
			if tc.state != 0 && r.KeyID != "" {
				if got := h.state(r.KeyID); got != tc.state {
					t.Fatalf("state %s, want %s", stateName(got), stateName(tc.state))
				}
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

func TestKeyStateTransitions(t *testing.T) {
	const k = "k1"
	pendingDel := []*eventsv1.Envelope{createKey(k), schedule(k, 7*86400)}
	deleted := func() []*eventsv1.Envelope {
		return []*eventsv1.Envelope{createKey(k), schedule(k, 1)}
	}
	runCases(t, []transitionCase{
		{name: "create generated", event: createKey(k), state: stEnabled, check: func(t *testing.T, h *harness) {
			if h.key(k).CurrentVersion() != 1 || h.key(k).Versions[0].Type != eventsv1.RotationType_ROTATION_TYPE_INITIAL {
				t.Fatal("want version 1 INITIAL")
			}
		}},
		{name: "create external is pending import", event: createExternal(k), state: stPendingImport, check: func(t *testing.T, h *harness) {
			if h.key(k).CurrentVersion() != 0 {
				t.Fatal("external key must have no versions")
			}
		}},
		{name: "create managed rotates yearly", event: createManaged(k), state: stEnabled, check: func(t *testing.T, h *harness) {
			if r := h.key(k).Rotation; !r.Enabled || r.PeriodSec != 365*86400 {
				t.Fatalf("managed rotation %+v", r)
			}
		}},
		{name: "create duplicate", setup: []*eventsv1.Envelope{createKey(k)}, event: createKey(k), want: ErrAlreadyExists},
		{name: "create without ID", event: createKey(""), want: ErrValidation},
		{name: "create generated without material", event: ev(&eventsv1.CreateKey{KeyId: k, Origin: originGenerated}), want: ErrValidation},
		{name: "create external with material", event: ev(&eventsv1.CreateKey{KeyId: k, Origin: originExternal, SealedMaterial: []byte("x")}), want: ErrValidation},
		{name: "create unknown origin", event: ev(&eventsv1.CreateKey{KeyId: k, SealedMaterial: []byte("x")}), want: ErrValidation},
		{name: "create unsupported spec", event: ev(&eventsv1.CreateKey{KeyId: k, Origin: originGenerated, SealedMaterial: []byte("x"), KeySpec: "RSA_1024"}), want: ErrValidation},

		{name: "disable enabled", setup: []*eventsv1.Envelope{createKey(k)}, event: disable(k), state: stDisabled},
		{name: "disable disabled", setup: []*eventsv1.Envelope{createKey(k), disable(k)}, event: disable(k), state: stDisabled},
		{name: "enable disabled", setup: []*eventsv1.Envelope{createKey(k), disable(k)}, event: enable(k), state: stEnabled},
		{name: "enable enabled", setup: []*eventsv1.Envelope{createKey(k)}, event: enable(k), state: stEnabled},
		{name: "enable unknown", event: enable("nope"), want: ErrNotFound},
		{name: "enable pending deletion", setup: pendingDel, event: enable(k), want: ErrInvalidState},
		{name: "disable pending deletion", setup: pendingDel, event: disable(k), want: ErrInvalidState},
		{name: "enable pending import", setup: []*eventsv1.Envelope{createExternal(k)}, event: enable(k), want: ErrInvalidState},
		{name: "disable pending import", setup: []*eventsv1.Envelope{createExternal(k)}, event: disable(k), want: ErrInvalidState},

		{name: "schedule deletion", setup: []*eventsv1.Envelope{createKey(k)}, event: schedule(k, 7*86400), state: stPendingDeletion,
			check: func(t *testing.T, h *harness) {
				if got, want := h.key(k).DeletionAt, h.now+7*86400*sec; got != want {
					t.Fatalf("deletion at %d, want %d", got, want)
				}
			}},
		{name: "schedule deletion of disabled", setup: []*eventsv1.Envelope{createKey(k), disable(k)}, event: schedule(k, 7*86400), state: stPendingDeletion},
		{name: "schedule deletion of pending import", setup: []*eventsv1.Envelope{createExternal(k)}, event: schedule(k, 7*86400), state: stPendingDeletion},
		{name: "schedule deletion twice", setup: pendingDel, event: schedule(k, 7*86400), want: ErrInvalidState},
		{name: "schedule deletion zero window", setup: []*eventsv1.Envelope{createKey(k)}, event: schedule(k, 0), want: ErrValidation},
		{name: "cancel deletion leaves disabled", setup: pendingDel, event: cancelDel(k), state: stDisabled, check: func(t *testing.T, h *harness) {
			if h.key(k).DeletionAt != 0 {
				t.Fatal("deletion time kept")
			}
		}},
		{name: "cancel deletion of external without material", setup: []*eventsv1.Envelope{createExternal(k), schedule(k, 60)}, event: cancelDel(k), state: stPendingImport},
		{name: "cancel deletion of enabled", setup: []*eventsv1.Envelope{createKey(k)}, event: cancelDel(k), want: ErrInvalidState},

		{name: "delete when due", setup: deleted(), event: deleteKey(k, 1_700_000_000*sec+2*sec), state: stDeleted,
			check: func(t *testing.T, h *harness) {
				key := h.key(k)
				if len(key.Versions) != 1 || key.Versions[0].Sealed != nil {
					t.Fatal("deleted key must keep its version records without material")
				}
			}},
		{name: "delete with wrong expected time", setup: deleted(), event: deleteKey(k, 42), want: ErrConflict},
		{name: "delete before due", setup: pendingDel, event: deleteKey(k, 1_700_000_000*sec+sec+7*86400*sec), want: ErrConflict},
		{name: "delete enabled", setup: []*eventsv1.Envelope{createKey(k)}, event: deleteKey(k, 0), want: ErrInvalidState},
		{name: "enable deleted", setup: append(deleted(), deleteKey(k, 1_700_000_000*sec+2*sec)), event: enable(k), want: ErrInvalidState},
		{name: "schedule deletion of deleted", setup: append(deleted(), deleteKey(k, 1_700_000_000*sec+2*sec)), event: schedule(k, 60), want: ErrInvalidState},
		{name: "rotate deleted", setup: append(deleted(), deleteKey(k, 1_700_000_000*sec+2*sec)), event: rotate(k, onDemand, 1), want: ErrInvalidState},

		{name: "policy", setup: []*eventsv1.Envelope{createKey(k)}, event: ev(&eventsv1.PutKeyPolicy{KeyId: k, PolicyName: "default", Policy: `{"Version":"2012-10-17"}`}),
			check: func(t *testing.T, h *harness) {
				if h.key(k).Policy != `{"Version":"2012-10-17"}` {
					t.Fatal("policy not stored")
				}
			}},
		{name: "policy bad name", setup: []*eventsv1.Envelope{createKey(k)}, event: ev(&eventsv1.PutKeyPolicy{KeyId: k, PolicyName: "other", Policy: "{}"}), want: ErrValidation},
		{name: "policy empty", setup: []*eventsv1.Envelope{createKey(k)}, event: ev(&eventsv1.PutKeyPolicy{KeyId: k}), want: ErrValidation},
		{name: "description", setup: []*eventsv1.Envelope{createKey(k)}, event: ev(&eventsv1.UpdateKeyDescription{KeyId: k, Description: "payments"}),
			check: func(t *testing.T, h *harness) {
				if h.key(k).Description != "payments" {
					t.Fatal("description not stored")
				}
			}},
		{name: "tags merge and untag", setup: []*eventsv1.Envelope{createKey(k),
			ev(&eventsv1.TagKey{KeyId: k, Tags: []*eventsv1.Tag{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}}})},
			event: ev(&eventsv1.UntagKey{KeyId: k, TagKeys: []string{"b"}}),
			check: func(t *testing.T, h *harness) {
				tags := h.key(k).Tags
				if len(tags) != 1 || tags[0] != (Tag{"a", "2"}) {
					t.Fatalf("tags %v", tags)
				}
			}},
		{name: "tag with empty key", setup: []*eventsv1.Envelope{createKey(k)}, event: ev(&eventsv1.TagKey{KeyId: k, Tags: []*eventsv1.Tag{{Value: "x"}}}), want: ErrValidation},
	})
}

func TestAliases(t *testing.T) {
	alias := func(name, id string) *eventsv1.Envelope {
		return ev(&eventsv1.CreateAlias{AliasName: name, TargetKeyId: id})
	}
	runCases(t, []transitionCase{
		{name: "create", setup: []*eventsv1.Envelope{createKey("a")}, event: alias("alias/app", "a"), check: func(t *testing.T, h *harness) {
			k, err := h.f.ResolveKey("alias/app")
			if err != nil || k.ID != "a" {
				t.Fatalf("resolve: %v", err)
			}
		}},
		{name: "create duplicate", setup: []*eventsv1.Envelope{createKey("a"), alias("alias/app", "a")}, event: alias("alias/app", "a"), want: ErrAlreadyExists},
		{name: "bad name", setup: []*eventsv1.Envelope{createKey("a")}, event: alias("app", "a"), want: ErrValidation},
		{name: "unknown key", event: alias("alias/app", "zz"), want: ErrNotFound},
		{name: "pending deletion key", setup: []*eventsv1.Envelope{createKey("a"), schedule("a", 60)}, event: alias("alias/app", "a"), want: ErrInvalidState},
		{name: "update", setup: []*eventsv1.Envelope{createKey("a"), createKey("b"), alias("alias/app", "a")},
			event: ev(&eventsv1.UpdateAlias{AliasName: "alias/app", TargetKeyId: "b"}), check: func(t *testing.T, h *harness) {
				if k, _ := h.f.ResolveKey("alias/app"); k.ID != "b" {
					t.Fatal("alias not moved")
				}
			}},
		{name: "update unknown", setup: []*eventsv1.Envelope{createKey("a")}, event: ev(&eventsv1.UpdateAlias{AliasName: "alias/x", TargetKeyId: "a"}), want: ErrNotFound},
		{name: "delete", setup: []*eventsv1.Envelope{createKey("a"), alias("alias/app", "a")}, event: ev(&eventsv1.DeleteAlias{AliasName: "alias/app"}),
			check: func(t *testing.T, h *harness) {
				if _, err := h.f.ResolveKey("alias/app"); err == nil {
					t.Fatal("alias still resolves")
				}
			}},
		{name: "delete unknown", event: ev(&eventsv1.DeleteAlias{AliasName: "alias/x"}), want: ErrNotFound},
		{name: "key deletion removes aliases", setup: []*eventsv1.Envelope{createKey("a"), alias("alias/app", "a"), schedule("a", 1)},
			event: deleteKey("a", 1_700_000_000*sec+3*sec), check: func(t *testing.T, h *harness) {
				if len(h.f.Aliases("")) != 0 {
					t.Fatal("alias of deleted key kept")
				}
			}},
		{name: "register node", event: ev(&eventsv1.RegisterNode{NodeId: "n1", GrpcAddr: "127.0.0.1:7001"}), check: func(t *testing.T, h *harness) {
			if n, ok := h.f.Node("n1"); !ok || n.GRPCAddr != "127.0.0.1:7001" {
				t.Fatal("node not registered")
			}
		}},
		{name: "register node without ID", event: ev(&eventsv1.RegisterNode{}), want: ErrValidation},
	})
}

func TestResolveKeyForms(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("1234"))
	h.ok(ev(&eventsv1.CreateAlias{AliasName: "alias/x", TargetKeyId: "1234"}))
	for _, ref := range []string{"1234", "alias/x", "arn:raftkms:kms:local:000000000000:key/1234", "arn:raftkms:kms:local:000000000000:alias/x"} {
		k, err := h.f.ResolveKey(ref)
		if err != nil || k.ID != "1234" {
			t.Errorf("ResolveKey(%q) = %v, %v", ref, k, err)
		}
	}
	if _, err := h.f.ResolveKey("alias/none"); err == nil {
		t.Error("unknown alias resolved")
	}
}
