package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func batch(items ...*eventsv1.RotateKey) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKeys{RotateKeys: &eventsv1.RotateKeys{Rotations: items}}}
}

func autoItem(id string, expected uint32) *eventsv1.RotateKey {
	return &eventsv1.RotateKey{KeyId: id, RotationType: automatic, ExpectedCurrentVersion: expected,
		SealedMaterial: mat(id, expected+1)}
}

// stormSetup makes keys a..f: a, b, c and d rotate hourly and are due, d is
// disabled, e never rotates automatically, f is rotated once already.
func stormSetup(h *harness) {
	h.t.Helper()
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		h.ok(createKey(id))
		if id != "e" {
			h.ok(enableRot(id, 3600))
		}
	}
	h.ok(disable("d"))
	h.ok(rotate("f", onDemand, 1))
	h.advance(3601 * sec)
}

// stormItems mixes valid and stale expected versions, a disabled key, a key
// without automatic rotation, a missing key and one key twice.
func stormItems() []*eventsv1.RotateKey {
	return []*eventsv1.RotateKey{
		autoItem("a", 1),       // applies
		autoItem("b", 0),       // stale guard
		autoItem("c", 1),       // applies
		autoItem("d", 1),       // disabled
		autoItem("e", 1),       // rotation is off
		autoItem("missing", 1), // not found
		autoItem("a", 1),       // a is at 2 now: stale
		autoItem("f", 2),       // applies
		autoItem("b", 2),       // stale the other way
	}
}

var stormWant = []struct {
	version uint32
	err     *Rejection
}{
	{2, nil}, {0, ErrConflict}, {2, nil}, {0, ErrDisabled}, {0, ErrConflict}, {0, ErrNotFound},
	{0, ErrConflict}, {3, nil}, {0, ErrConflict},
}

// TestRotateKeysPerItem: each item of a batch applies or is rejected on its
// own, in order, with the same outcome and key state as a RotateKey entry of
// its own at the same time.
func TestRotateKeysPerItem(t *testing.T) {
	var changed []string
	h := newHarness(t)
	h.f.cfg.OnChange = func(id string) { changed = append(changed, id) }
	stormSetup(h)
	before := h.f.ModIndex("b")
	changed = nil
	r := h.ok(batch(stormItems()...))
	if len(r.Items) != len(stormWant) {
		t.Fatalf("%d item results, want %d", len(r.Items), len(stormWant))
	}
	for i, w := range stormWant {
		it := r.Items[i]
		if it.KeyID != stormItems()[i].KeyId {
			t.Errorf("item %d: key %q", i, it.KeyID)
		}
		if w.err == nil && (it.Err != nil || it.Version != w.version) {
			t.Errorf("item %d (%s): %v at version %d, want applied at %d", i, it.KeyID, it.Err, it.Version, w.version)
		}
		if w.err != nil && !errors.Is(it.Err, w.err) {
			t.Errorf("item %d (%s): %v, want code %d", i, it.KeyID, it.Err, w.err.Code)
		}
	}
	// Every changed key is reported and its modification index moves; the
	// others' do not.
	if !slices.Equal(changed, []string{"a", "c", "f"}) {
		t.Errorf("OnChange for %v, want a, c, f", changed)
	}
	for _, id := range []string{"a", "c", "f"} {
		if got := h.f.ModIndex(id); got != h.idx {
			t.Errorf("ModIndex(%s) = %d, want the batch's index %d", id, got, h.idx)
		}
	}
	if got := h.f.ModIndex("b"); got != before {
		t.Errorf("ModIndex(b) = %d, want %d: b was not changed", got, before)
	}

	// The same rotations one entry each, at the same time: the same outcome
	// and the same keys, but for the history's hashes (an item's entry is the
	// batch).
	s := newHarness(t)
	stormSetup(s)
	for i, it := range stormItems() {
		res := s.apply(ev(it))
		if (res.Err == nil) != (r.Items[i].Err == nil) || res.Version != r.Items[i].Version ||
			(res.Err != nil && res.Err.(*Rejection).Code != r.Items[i].Err.(*Rejection).Code) {
			t.Errorf("item %d: alone %v at %d, in the batch %v at %d", i, res.Err, res.Version, r.Items[i].Err, r.Items[i].Version)
		}
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		bk, sk := h.key(id), s.key(id)
		if !reflect.DeepEqual(bk.Versions, sk.Versions) || bk.Rotation != sk.Rotation || len(bk.History) != len(sk.History) {
			t.Errorf("key %s: batched %+v, alone %+v", id, bk, sk)
		}
		last := bk.History[len(bk.History)-1]
		if sl := sk.History[len(sk.History)-1]; last.Type != sl.Type || last.Version != sl.Version || last.Principal != sl.Principal {
			t.Errorf("key %s: batched history %+v, alone %+v", id, last, sl)
		}
	}
	if k := h.key("a"); k.History[len(k.History)-1].Type != "RotateKey" {
		t.Errorf("a rotation in a batch is recorded as %q", k.History[len(k.History)-1].Type)
	}
}

// TestRotateKeysProposedTwice: the same batch proposed by an old and a new
// leader applies once; the second entry's items are all rejected by their
// guards and change nothing.
func TestRotateKeysProposedTwice(t *testing.T) {
	var changed []string
	h := newHarness(t)
	h.f.cfg.OnChange = func(id string) { changed = append(changed, id) }
	stormSetup(h)
	items := []*eventsv1.RotateKey{autoItem("a", 1), autoItem("c", 1)}
	first := h.ok(batch(items...))
	for i, it := range first.Items {
		if it.Err != nil || it.Version != 2 {
			t.Fatalf("first proposal, item %d: %v at %d", i, it.Err, it.Version)
		}
	}
	digest, other := h.keyDigest(), h.f.ModIndex()
	changed = nil
	h.now += sec
	second := h.ok(batch(items...))
	for i, it := range second.Items {
		if !errors.Is(it.Err, ErrConflict) {
			t.Fatalf("second proposal, item %d: %v, want a conflict", i, it.Err)
		}
	}
	if h.keyDigest() != digest {
		t.Fatal("the second proposal changed the state")
	}
	if len(changed) != 0 {
		t.Fatalf("the second proposal reported changes to %v", changed)
	}
	// Nothing applied: not even a change "not tied to a key", which would
	// hold every read back.
	if got := h.f.ModIndex("unrelated"); got >= h.idx || got > other {
		t.Fatalf("ModIndex(unrelated) = %d after a batch that changed nothing", got)
	}
	if n := len(h.key("a").Versions); n != 2 {
		t.Fatalf("key a has %d versions", n)
	}
}

// TestRotateKeysRefusedAsAWhole: a batch the state machine cannot take is
// refused before any item applies.
func TestRotateKeysRefusedAsAWhole(t *testing.T) {
	h := newHarness(t)
	stormSetup(h)
	h.refused(batch(), ErrValidation)
	many := make([]*eventsv1.RotateKey, MaxRotateBatch+1)
	for i := range many {
		many[i] = autoItem("a", 1)
	}
	h.refused(batch(many...), ErrValidation)
	big := &eventsv1.RotateKey{KeyId: "a", RotationType: automatic, ExpectedCurrentVersion: 1,
		SealedMaterial: bytes.Repeat([]byte{1}, MaxRotateBatchBytes)}
	h.refused(batch(big), ErrValidation)
	withID := batch(autoItem("a", 1))
	withID.RequestId = "r1"
	h.refused(withID, ErrValidation)
	old := batch(autoItem("a", 1))
	old.SchemaVersion = SchemaStage
	h.refused(old, ErrValidation)
	if v := h.key("a").CurrentVersion(); v != 1 {
		t.Fatalf("a refused batch rotated key a to %d", v)
	}
}

// TestRotateKeysReplay: a log with batches replays to the same digest, and
// the random log's batches both apply and reject items.
func TestRotateKeysReplay(t *testing.T) {
	h := newHarness(t)
	var log [][]byte
	rec := func(env *eventsv1.Envelope) {
		if env.TimeUnixNano == 0 {
			env.TimeUnixNano = h.now
		}
		data, err := EncodeEntry(env)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, data)
	}
	// The clock moves at most MaxClockStep per entry.
	advance := func(d int64) {
		for end := h.now + d; h.now < end; {
			h.now = min(h.now+int64(MaxClockStep), end)
			rec(ev(&eventsv1.RegisterNode{NodeId: "n0", GrpcAddr: "127.0.0.1:7000"}))
		}
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		rec(createKey(id))
		if id != "e" {
			rec(enableRot(id, 3600))
		}
	}
	rec(disable("d"))
	rec(rotate("f", onDemand, 1))
	advance(3601 * sec)
	rec(batch(stormItems()...))
	advance(3601 * sec)
	rec(batch(autoItem("a", 2), autoItem("b", 1), autoItem("c", 1)))
	a, b := applyAll(t, log), applyAll(t, log)
	if a.Digest() != b.Digest() || !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("same log, different states")
	}
	if k, _ := a.Key("a"); k.CurrentVersion() != 3 {
		t.Fatalf("key a at %d after two batches, want 3", k.CurrentVersion())
	}
	if k, _ := a.Key("c"); k.CurrentVersion() != 2 {
		t.Fatalf("key c at %d, want 2 (its second item was stale)", k.CurrentVersion())
	}

	applied, rejected := 0, 0
	f, _ := New(Config{})
	for i, data := range randomLog(t, 1, 3000) {
		for _, it := range f.ApplyEntry(uint64(i+1), data).Items {
			if it.Err == nil {
				applied++
			} else {
				rejected++
			}
		}
	}
	if applied == 0 || rejected == 0 {
		t.Fatalf("the random log's batches: %d items applied, %d rejected", applied, rejected)
	}
}

// TestRotateKeysHistoryChain: each item's history entry chains from the
// key's head and depends on the whole entry and the item's place in it.
func TestRotateKeysHistoryChain(t *testing.T) {
	heads := map[string][32]byte{}
	for _, order := range [][]string{{"a", "c"}, {"c", "a"}} {
		h := newHarness(t)
		stormSetup(h)
		var items []*eventsv1.RotateKey
		for _, id := range order {
			items = append(items, autoItem(id, 1))
		}
		prev := h.key("a").HistoryHead()
		h.ok(batch(items...))
		head := h.key("a").HistoryHead()
		if head == prev {
			t.Fatal("the chain does not advance")
		}
		if head == heads["a"] {
			t.Fatal("another entry, the same chain head")
		}
		heads["a"] = head
	}
}
