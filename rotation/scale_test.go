package rotation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// Thousands of keys with 50 different periods: the heap built by one pass
// stays consistent through many rotations, each key rotates exactly when
// due, and waking up costs no reads of the state unless something changed.
func TestManyKeys(t *testing.T) {
	const nkeys, steps = 3000, 70
	period := func(i int) int64 { return 100 + int64(i%50)*10 }
	h := newHarness(t)
	ids := make([]string, nkeys)
	for i := range ids {
		ids[i] = fmt.Sprintf("key-%04d", i)
		h.ok(createKey(ids[i]))
		h.ok(enableRot(ids[i], period(i)))
	}
	n := h.start(func(c *Config) { c.MaxInFlight = 8 })
	reads0 := h.state.keyReads.Load()

	var want uint64
	for step := 1; step <= steps; step++ {
		h.advance(10 * time.Second)
		h.settle(n)
		elapsed := int64(step) * 10
		want = 0
		for i, id := range ids {
			v := 1 + int(elapsed/period(i))
			want += uint64(v - 1)
			k := h.key(id)
			if len(k.Versions) != v {
				t.Fatalf("+%ds: key %s (period %ds) has %d versions, want %d", elapsed, id, period(i), len(k.Versions), v)
			}
			if k.Rotation.NextRotation <= h.now() {
				t.Fatalf("+%ds: key %s left overdue", elapsed, id)
			}
		}
	}
	for _, id := range ids {
		checkVersions(t, h.key(id), len(h.key(id).Versions))
	}
	st := n.s.Stats()
	if st.Applied != want || st.Proposed != want {
		t.Fatalf("stats %+v, want %d rotations proposed and applied", st, want)
	}
	if s := h.state.scans.Load(); s != 1 {
		t.Fatalf("%d full passes over the keys, want 1 per term", s)
	}
	// Per rotation: one read when it falls due, one when the proposal
	// returns, one for its change notification.
	reads := h.state.keyReads.Load() - reads0
	if reads > 3*int64(want) {
		t.Fatalf("%d key reads for %d rotations: more than 3 each", reads, want)
	}

	// Wake-ups with nothing due read nothing.
	reads = h.state.keyReads.Load()
	passes := n.s.passes.Load()
	for range 5 {
		h.advance(time.Second)
		h.settle(n)
	}
	if got := h.state.keyReads.Load(); got != reads || n.s.passes.Load() < passes+5 {
		t.Fatalf("%d key reads over %d idle passes, want 0", got-reads, n.s.passes.Load()-passes)
	}
}

// The heap pops in (due, key, kind) order through any mix of upserts and
// removals, with at most one entry per item.
func TestDueHeapMatchesReference(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	h := newDueHeap()
	ref := map[item]int64{}
	for range 20000 {
		it := item{keyID: fmt.Sprintf("k%d", rng.IntN(200)), kind: kinds[rng.IntN(len(kinds))]}
		switch op := rng.IntN(10); {
		case op < 6:
			due := rng.Int64N(1000)
			h.upsert(it, due)
			ref[it] = due
		case op < 8:
			h.remove(it)
			delete(ref, it)
		default:
			got, due, ok := h.pop()
			if ok != (len(ref) > 0) {
				t.Fatalf("pop ok=%v with %d in the reference", ok, len(ref))
			}
			if !ok {
				continue
			}
			for ri, rd := range ref {
				if rd < due || (rd == due && (ri.keyID < got.keyID || (ri.keyID == got.keyID && ri.kind < got.kind))) {
					t.Fatalf("popped %v@%d but %v@%d is earlier", got, due, ri, rd)
				}
			}
			if ref[got] != due {
				t.Fatalf("popped %v@%d, reference has %d", got, due, ref[got])
			}
			delete(ref, got)
		}
		if h.Len() != len(ref) || len(h.index) != len(ref) {
			t.Fatalf("heap holds %d (index %d), reference %d", h.Len(), len(h.index), len(ref))
		}
		// dueAtLeast agrees with a count of the reference.
		now, want := rng.Int64N(1000), rng.IntN(40)
		due := 0
		for _, d := range ref {
			if d <= now {
				due++
			}
		}
		if got := h.dueAtLeast(now, want); got != (due >= want) {
			t.Fatalf("dueAtLeast(%d, %d) = %v with %d due", now, want, got, due)
		}
	}
}

func BenchmarkHeapPushPop(b *testing.B) {
	for _, size := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			h := newDueHeap()
			for i := range size {
				h.upsert(item{keyID: fmt.Sprintf("key-%06d", i), kind: KindRotate}, rng.Int64N(1e12))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				it, due, _ := h.pop()
				h.upsert(it, due+rng.Int64N(1e9))
			}
		})
	}
}

// BenchmarkRescheduleAfterKeyChanged measures what one applied change costs
// the scheduler: the notification, then re-reading the key and moving its
// heap entry.
func BenchmarkRescheduleAfterKeyChanged(b *testing.B) {
	const nkeys = 10_000
	h := newHarness(b)
	ids := make([]string, nkeys)
	for i := range ids {
		ids[i] = fmt.Sprintf("key-%05d", i)
		h.ok(createKey(ids[i]))
		h.ok(enableRot(ids[i], 100+int64(i)))
	}
	s, err := New(Config{Proposer: &fakeProposer{log: h.log}, Leadership: newFakeLeader(false), State: h.f,
		NewMaterial: func(string, uint32) ([]byte, error) { return []byte("m"), nil }})
	if err != nil {
		b.Fatal(err)
	}
	tm := newTerm(s, context.Background())
	s.listen(true)
	tm.rebuild()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.KeyChanged(ids[i%nkeys])
		tm.applyDirty()
	}
}
