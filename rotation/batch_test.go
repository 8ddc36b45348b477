package rotation

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// stormKeys makes n keys with a 100 s rotation period and moves the clock to
// their first rotation: all due at once.
func (h *harness) stormKeys(n int) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("storm-%04d", i)
		h.ok(createKey(ids[i]))
		h.ok(enableRot(ids[i], 100))
	}
	h.advance(100 * time.Second)
	return ids
}

// batchSizes records the rotations of each RotateKeys entry proposed, and
// counts the RotateKey entries.
type batchSizes struct {
	mu      sync.Mutex
	sizes   []int
	singles int
}

func (b *batchSizes) hook(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
	b.mu.Lock()
	if rk := env.GetRotateKeys(); rk != nil {
		b.sizes = append(b.sizes, len(rk.Rotations))
	} else if env.GetRotateKey() != nil {
		b.singles++
	}
	b.mu.Unlock()
	return apply(), nil
}

func (b *batchSizes) get() ([]int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...), b.singles
}

// Keys due at once go out as batches of at most BatchSize rotations; each
// rotates exactly once, and the scheduler reads each key no more often than
// it does for rotations one by one.
func TestBatchStorm(t *testing.T) {
	const nkeys, size = 1000, 64
	h := newHarness(t)
	var rec batchSizes
	p := &fakeProposer{log: h.log}
	p.setHook(rec.hook)
	ids := h.stormKeys(nkeys)
	reads0 := h.state.keyReads.Load()
	n := h.launch(p, func(c *Config) { c.BatchSize, c.MaxInFlight, c.RotationRate = size, 2, math.Inf(1) })
	eventually(t, "scheduler active", n.s.Active)
	h.settle(n)
	for _, id := range ids {
		k := h.key(id)
		checkVersions(t, k, 2)
		if got := countEvents(k, "RotateKey"); got != 1 {
			t.Fatalf("key %s: %d RotateKey history entries, want 1", id, got)
		}
	}
	sizes, singles := rec.get()
	total := singles
	for _, s := range sizes {
		if s > size {
			t.Fatalf("a batch of %d rotations, want at most %d", s, size)
		}
		total += s
	}
	if total != nkeys || len(sizes) < nkeys/size {
		t.Fatalf("%d batches (%v) and %d single rotations for %d keys", len(sizes), sizes, singles, nkeys)
	}
	st := n.s.Stats()
	if st.Applied != nkeys || st.Proposed != nkeys || st.Batches != uint64(len(sizes)) || st.InFlight != 0 {
		t.Fatalf("stats %+v, want %d rotations proposed and applied in %d batches", st, nkeys, len(sizes))
	}
	if m := p.maxActive.Load(); m > 2 {
		t.Fatalf("%d proposals at once, want at most MaxInFlight 2", m)
	}
	if reads := h.state.keyReads.Load() - reads0; reads > 3*nkeys {
		t.Fatalf("%d key reads for %d rotations: more than 3 each", reads, nkeys)
	}
}

// A batch whose keys changed after the scheduler decided: the stale items
// are rejected one by one, the others apply, and the rejected keys rotate
// once they may again.
func TestBatchMixedOutcomes(t *testing.T) {
	h := newHarness(t)
	ids := h.stormKeys(40)
	stale := map[string]bool{ids[3]: true, ids[17]: true, ids[31]: true}
	var once sync.Once
	var first *fsm.Result
	p := &fakeProposer{log: h.log}
	p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKeys() == nil {
			return apply(), nil
		}
		var res *fsm.Result
		once.Do(func() {
			// Between the decision and the apply: one key rotated on demand
			// (stale expected version), two disabled.
			for id := range stale {
				if id == ids[3] {
					h.ok(&eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{KeyId: id,
						RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND, ExpectedCurrentVersion: 1,
						SealedMaterial: []byte("on-demand")}}})
				} else {
					h.ok(disableKey(id))
				}
			}
			res = apply()
			first = res
		})
		if res == nil {
			res = apply()
		}
		return res, nil
	})
	n := h.launch(p, func(c *Config) { c.BatchSize, c.RotationRate = 64, math.Inf(1) })
	eventually(t, "scheduler active", n.s.Active)
	h.settle(n)
	if first == nil || len(first.Items) != len(ids) {
		t.Fatalf("first batch %+v, want one result per key", first)
	}
	for _, it := range first.Items {
		if stale[it.KeyID] != (it.Err != nil) {
			t.Fatalf("item %s: %v", it.KeyID, it.Err)
		}
	}
	for _, id := range ids {
		k := h.key(id)
		switch {
		case id == ids[3]:
			// Its rejected item was for version 1; still due, it rotates
			// again from version 2.
			if len(k.Versions) != 3 || k.Versions[1].Type != eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND ||
				k.Versions[2].Type != eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
				t.Fatalf("key %s: %+v, want its on-demand rotation, then an automatic one", id, k.Versions)
			}
		case stale[id]:
			checkVersions(t, k, 1)
		default:
			checkVersions(t, k, 2)
		}
	}
	st := n.s.Stats()
	if st.Applied != uint64(len(ids)-2) || st.Rejected[fsm.CodeConflict] != 1 || st.Rejected[fsm.CodeDisabled] != 2 {
		t.Fatalf("stats %+v: want %d applied, 1 conflict, 2 disabled", st, len(ids)-2)
	}
	// Enabled again, the two rotate after their backoff.
	h.ok(enableKey(ids[17]))
	h.ok(enableKey(ids[31]))
	h.advance(20 * time.Second)
	h.settle(n)
	checkVersions(t, h.key(ids[17]), 2)
	checkVersions(t, h.key(ids[31]), 2)
}

// An old leader's batch lands after the new leader's: every item of it is
// rejected by its guard, and each key rotates once.
func TestBatchProposedTwice(t *testing.T) {
	h := newHarness(t)
	ids := h.stormKeys(50)
	entered, applied := make(chan struct{}), make(chan struct{})
	var onceEntered, onceApplied sync.Once
	oldP, newP := &fakeProposer{log: h.log}, &fakeProposer{log: h.log}
	newP.setHook(func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKeys() == nil {
			return apply(), nil
		}
		select {
		case <-entered:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res := apply()
		onceApplied.Do(func() { close(applied) })
		return res, nil
	})
	oldP.setHook(func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKeys() != nil {
			onceEntered.Do(func() { close(entered) })
			select {
			case <-applied:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return apply(), nil
	})
	opts := func(c *Config) { c.BatchSize, c.RotationRate = 64, math.Inf(1) }
	oldLeader, newLeader := h.launch(oldP, opts), h.launch(newP, opts)
	eventually(t, "both active", func() bool { return oldLeader.s.Active() && newLeader.s.Active() })
	h.settle(newLeader)
	h.settle(oldLeader)
	for _, id := range ids {
		k := h.key(id)
		checkVersions(t, k, 2)
		if got := countEvents(k, "RotateKey"); got != 1 {
			t.Fatalf("key %s: %d RotateKey history entries, want 1", id, got)
		}
	}
	so, sn := oldLeader.s.Stats(), newLeader.s.Stats()
	if sn.Applied != uint64(len(ids)) || so.Applied != 0 || so.Rejected[fsm.CodeConflict] != uint64(len(ids)) {
		t.Fatalf("old %+v, new %+v: want every rotation applied by the new leader, every one of the old's rejected", so, sn)
	}
}

// schemaGate answers like raftnode for a cluster whose oldest member knows
// schema: an event that needs a newer one is refused as unsupported.
func schemaGate(schema uint32, rec *batchSizes) proposeHook {
	return func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if need := fsm.MinSchema(env); need > schema {
			return &fsm.Result{Err: &fsm.Rejection{Code: fsm.CodeUnsupported, Msg: "upgrade every node first"}}, nil
		}
		return rec.hook(ctx, env, apply)
	}
}

// On a cluster with a member older than RotateKeys, the refused batch falls
// back to one entry per rotation: every key rotates once, and batches are
// tried again only after a while.
func TestBatchFallbackOnOldSchema(t *testing.T) {
	h := newHarness(t)
	ids := h.stormKeys(60)
	var rec batchSizes
	p := &fakeProposer{log: h.log}
	p.setHook(schemaGate(fsm.SchemaBatch-1, &rec))
	n := h.launch(p, func(c *Config) { c.BatchSize, c.RotationRate = 64, math.Inf(1) })
	eventually(t, "scheduler active", n.s.Active)
	h.settle(n)
	for _, id := range ids {
		checkVersions(t, h.key(id), 2)
	}
	sizes, singles := rec.get()
	st := n.s.Stats()
	if len(sizes) != 0 || singles != len(ids) || st.BatchFallbacks != 1 || st.Applied != uint64(len(ids)) || st.InFlight != 0 {
		t.Fatalf("stats %+v, %d batches applied, %d single rotations: want one refused batch, then %d singles",
			st, len(sizes), singles, len(ids))
	}
	// Within batchRetryAfter the next storm goes one by one without asking.
	h.advance(100 * time.Second)
	h.settle(n)
	for _, id := range ids {
		checkVersions(t, h.key(id), 3)
	}
	if st := n.s.Stats(); st.BatchFallbacks != 1 || st.Batches != 1 {
		t.Fatalf("stats %+v: want no batch tried again yet", st)
	}
}

// schemaProposer is a proposer that says which schema the cluster proposes
// at, as raftnode.Node does.
type schemaProposer struct {
	*fakeProposer
	schema uint32
}

func (p *schemaProposer) ProposeSchema() uint32 { return p.schema }

// A proposer that says the cluster proposes below RotateKeys' schema gets no
// batch at all.
func TestNoBatchBelowSchema(t *testing.T) {
	h := newHarness(t)
	ids := h.stormKeys(60)
	var rec batchSizes
	fp := &fakeProposer{log: h.log}
	fp.setHook(schemaGate(fsm.SchemaBatch-1, &rec))
	p := &schemaProposer{fakeProposer: fp, schema: fsm.SchemaBatch - 1}
	n := &node{p: fp, lead: newFakeLeader(true)}
	s, err := New(Config{Proposer: p, Leadership: n.lead, State: h.state, Now: h.clock.Now, Tick: time.Millisecond,
		NewMaterial: func(id string, v uint32) ([]byte, error) { return []byte(fmt.Sprintf("sealed(%s,v%d)", id, v)), nil }})
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
	h.subMu.Lock()
	h.subs = append(h.subs, s.KeyChanged)
	h.subMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "scheduler active", s.Active)
	h.settle(n)
	for _, id := range ids {
		checkVersions(t, h.key(id), 2)
	}
	if st := s.Stats(); st.Batches != 0 || st.BatchFallbacks != 0 || st.Applied != uint64(len(ids)) {
		t.Fatalf("stats %+v: want %d single rotations and no batch", st, len(ids))
	}
}

// The token bucket: rotations start no faster than RotationRate a second
// beyond one bucket and one batch, and all of them still get done. The bound
// is an upper one on work per elapsed time, so a slow machine cannot break it.
func TestBatchPacing(t *testing.T) {
	const nkeys, size, rate = 600, 50, 1000
	h := newHarness(t)
	ids := h.stormKeys(nkeys)
	p := &fakeProposer{log: h.log}
	var proposed atomic.Int64
	var over atomic.Value
	begin := time.Now()
	p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		n := int64(1)
		if rk := env.GetRotateKeys(); rk != nil {
			n = int64(len(rk.Rotations))
		}
		total := proposed.Add(n)
		// A bucket of size, a batch of debt, and rate per second since the
		// first pass (which began after begin).
		if limit := 2*size + int64(rate*time.Since(begin).Seconds()); total > limit {
			over.Store(fmt.Sprintf("%d rotations proposed after %v, more than %d", total, time.Since(begin), limit))
		}
		return apply(), nil
	})
	n := h.launch(p, func(c *Config) { c.BatchSize, c.RotationRate, c.MaxInFlight = size, rate, 4 })
	eventually(t, "scheduler active", n.s.Active)
	eventually(t, "all rotated", func() bool { return n.s.Stats().Applied == nkeys })
	h.settle(n)
	if v := over.Load(); v != nil {
		t.Fatal(v)
	}
	for _, id := range ids {
		checkVersions(t, h.key(id), 2)
	}
}
