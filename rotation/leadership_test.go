package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Losing leadership cancels the proposals in flight at once and no new one
// is made; regaining it starts a new term: Barrier, one full pass, work.
func TestLeadershipLossStopsProposals(t *testing.T) {
	h := newHarness(t)
	n := h.start(func(c *Config) { c.MaxInFlight = 3 })
	var cancelled atomic.Int64
	n.p.setHook(func(ctx context.Context, _ *eventsv1.Envelope, _ func() *fsm.Result) (*fsm.Result, error) {
		<-ctx.Done() // Raft never answers; only the end of the term ends the wait
		cancelled.Add(1)
		return nil, fmt.Errorf("%w: %w", errAmbiguous, ctx.Err())
	})
	ids := []string{"a", "b", "c", "d", "e"}
	h.dueKey(ids...)
	eventually(t, "3 proposals in flight", func() bool { return n.p.active.Load() == 3 })

	n.lead.set(false)
	eventually(t, "scheduler inactive", func() bool { return !n.s.Active() })
	if a, c := n.p.active.Load(), cancelled.Load(); a != 0 || c != 3 {
		t.Fatalf("%d proposals still running, %d cancelled; want 0 and 3", a, c)
	}
	calls := n.p.calls.Load()
	n.p.setHook(nil)
	h.advance(1000 * time.Second)
	for _, id := range ids {
		h.ok(tagKey(id, "touched", "yes")) // notifications while not leading
	}
	never(t, "a proposal while not leading", 50*time.Millisecond, func() bool { return n.p.calls.Load() != calls })
	for _, id := range ids {
		checkVersions(t, h.key(id), 1)
	}

	n.lead.set(true)
	eventually(t, "scheduler active again", n.s.Active)
	h.settle(n)
	for _, id := range ids {
		checkVersions(t, h.key(id), 2)
	}
	if st := n.s.Stats(); st.Terms != 2 || st.Scans != 2 || n.p.barriers.Load() != 2 || h.state.scans.Load() != 2 {
		t.Fatalf("stats %+v, %d barriers, %d scans: want 2 terms, each with one barrier and one pass",
			st, n.p.barriers.Load(), h.state.scans.Load())
	}
}

// A repeated true (intermediate values dropped) is a new term: it must
// Barrier again before acting.
func TestRepeatedTrueStartsNewTerm(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	n.lead.set(true)
	eventually(t, "second term", func() bool { return n.s.Stats().Terms == 2 && n.s.Active() })
	if b := n.p.barriers.Load(); b != 2 {
		t.Fatalf("%d barriers, want 2", b)
	}
	h.dueKey("k")
	h.settle(n)
	checkVersions(t, h.key("k"), 2)
}

// Nothing is proposed until the Barrier succeeds; a failed Barrier is
// retried after the backoff.
func TestBarrierBeforeScheduling(t *testing.T) {
	h := newHarness(t)
	h.dueKey("k") // due before the scheduler starts
	p := &fakeProposer{log: h.log}
	release := make(chan struct{})
	p.setBarrier(func(ctx context.Context) error {
		if p.barriers.Load() == 1 {
			return errors.New("test: barrier failed")
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	n := h.launch(p)
	eventually(t, "first barrier", func() bool { return p.barriers.Load() == 1 })
	never(t, "a proposal before the barrier", 20*time.Millisecond, func() bool { return p.calls.Load() > 0 || n.s.Active() })
	if p.barriers.Load() != 1 {
		t.Fatal("barrier retried before its backoff")
	}
	h.advance(10 * time.Second) // the backoff, on the scheduler's clock
	eventually(t, "second barrier", func() bool { return p.barriers.Load() == 2 })
	never(t, "a proposal before the barrier returned", 20*time.Millisecond, func() bool { return p.calls.Load() > 0 || n.s.Active() })
	close(release)
	eventually(t, "scheduler active", n.s.Active)
	h.settle(n)
	checkVersions(t, h.key("k"), 2)
}

// The scheduler never has more than MaxInFlight proposals outstanding, and
// the rest wait their turn.
func TestMaxInFlight(t *testing.T) {
	h := newHarness(t)
	n := h.start(func(c *Config) { c.MaxInFlight = 3 })
	release := make(chan struct{})
	n.p.setHook(func(ctx context.Context, _ *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		select {
		case <-release:
			return apply(), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("key-%02d", i))
	}
	h.dueKey(ids...)
	eventually(t, "3 proposals in flight", func() bool { return n.p.active.Load() == 3 })
	never(t, "more than 3 proposals", 30*time.Millisecond, func() bool { return n.p.calls.Load() > 3 })
	if st := n.s.Stats(); st.InFlight != 3 {
		t.Fatalf("stats %+v, want 3 in flight", st)
	}
	close(release)
	h.settle(n)
	for _, id := range ids {
		checkVersions(t, h.key(id), 2)
	}
	if m := n.p.maxActive.Load(); m != 3 {
		t.Fatalf("at most %d proposals at once, want 3", m)
	}
}

// A Restore replaces the whole state ("" notification): the heap is rebuilt
// from the restored keys.
func TestRestoreRebuilds(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("a"))
	h.ok(enableRot("a", 100))
	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	h.ok(disableRot("a")) // undone by the restore
	h.ok(createKey("gone"))
	h.ok(enableRot("gone", 100))
	n := h.start()

	h.log.mu.Lock()
	err := h.f.Restore(&snap)
	h.log.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	h.settle(n)
	if st := n.s.Stats(); st.Scans != 2 {
		t.Fatalf("stats %+v, want a second pass after the restore", st)
	}
	h.advance(100 * time.Second)
	h.settle(n)
	checkVersions(t, h.key("a"), 2)
	if _, ok := h.f.Key("gone"); ok {
		t.Fatal("restore did not remove the key")
	}
}
