package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// dueKey creates key id with a 100 s rotation period and moves the clock to
// its first rotation.
func (h *harness) dueKey(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		h.ok(createKey(id))
		h.ok(enableRot(id, 100))
	}
	h.advance(100 * time.Second)
}

// An Apply error whose entry did commit (leadership lost after replicating):
// the scheduler re-reads the key, sees the rotation done, and does not
// propose it again.
func TestAmbiguousAfterApply(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	var once atomic.Bool
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		res := apply()
		if env.GetRotateKey() != nil && once.CompareAndSwap(false, true) {
			return nil, fmt.Errorf("%w: leadership lost", errAmbiguous)
		}
		return res, nil
	})
	h.dueKey("k")
	h.settle(n)
	h.advance(10 * time.Second) // past any backoff
	h.settle(n)

	k := h.key("k")
	checkVersions(t, k, 2)
	if got := countEvents(k, "RotateKey"); got != 1 {
		t.Fatalf("%d RotateKey events, want 1", got)
	}
	if st := n.s.Stats(); st.Ambiguous != 1 || st.Proposed != 1 {
		t.Fatalf("stats %+v, want 1 ambiguous of 1 proposed", st)
	}
	h.advance(90 * time.Second) // the next period still works
	h.settle(n)
	checkVersions(t, h.key("k"), 3)
}

// An Apply error whose entry did not commit: the scheduler retries after its
// backoff with the same request ID, and the rotation happens once.
func TestAmbiguousWithoutApply(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	var once atomic.Bool
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey() != nil && once.CompareAndSwap(false, true) {
			return nil, fmt.Errorf("%w: timed out", errAmbiguous)
		}
		return apply(), nil
	})
	h.dueKey("k")
	h.settle(n)
	checkVersions(t, h.key("k"), 1)

	h.advance(9 * time.Second) // backoff is 10 s on the scheduler's clock
	h.settle(n)
	if c := n.p.calls.Load(); c != 1 {
		t.Fatalf("%d proposals before the backoff ended, want 1", c)
	}
	h.advance(time.Second)
	h.settle(n)
	checkVersions(t, h.key("k"), 2)
	ids := n.p.requestIDs()
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("request IDs %q: a retry after an ambiguous error must reuse the ID", ids)
	}
	if st := n.s.Stats(); st.Ambiguous != 1 || st.Applied != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The entry of an ambiguous proposal is still in the log and commits late,
// before or after the scheduler's retry. Either way the key rotates once:
// through idempotency when the retry has the same ID, through the guard
// when the key changed in between and the retry got a new ID.
func TestAmbiguousLateCommit(t *testing.T) {
	cases := []struct {
		name        string
		beforeRetry bool // the late entry commits before the retry is due
		touch       bool // an unrelated change to the key before the retry
		wantLate    fsm.Code
		wantDup     bool
	}{
		{name: "late commit after the retry", wantDup: true},
		{name: "late commit before the retry", beforeRetry: true},
		{name: "late commit after a retry with a new ID", touch: true, wantLate: fsm.CodeConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			n := h.start()
			var stashed atomic.Pointer[eventsv1.Envelope]
			n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
				if env.GetRotateKey() != nil && stashed.CompareAndSwap(nil, env) {
					return nil, errAmbiguous // handed to Raft, outcome unknown
				}
				return apply(), nil
			})
			h.dueKey("k")
			h.settle(n)
			late := stashed.Load()
			if late == nil {
				t.Fatal("nothing proposed")
			}
			if tc.touch {
				h.ok(tagKey("k", "owner", "x"))
			}
			if tc.beforeRetry {
				if res := h.log.apply(late); res.Err != nil {
					t.Fatalf("late commit rejected: %v", res.Err)
				}
				h.settle(n)
			}
			h.advance(10 * time.Second)
			h.settle(n)
			if !tc.beforeRetry {
				res := h.log.apply(late)
				if res.Duplicate != tc.wantDup || (tc.wantLate == 0) != (res.Err == nil) ||
					(res.Err != nil && !errors.Is(res.Err, &fsm.Rejection{Code: tc.wantLate})) {
					t.Fatalf("late commit: %+v, want duplicate=%v code %d", res, tc.wantDup, tc.wantLate)
				}
				h.settle(n)
			}
			k := h.key("k")
			checkVersions(t, k, 2)
			if got := countEvents(k, "RotateKey"); got != 1 {
				t.Fatalf("%d RotateKey events, want 1", got)
			}
		})
	}
}

// A definite rejection at an unchanged key state (here: "not due", as when
// the proposer's clock is behind) is remembered by the state machine under
// its request ID. The scheduler backs off instead of spinning, then retries
// with a fresh suffix, because the same ID would only replay the rejection.
func TestRejectedRetryGetsFreshRequestID(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	var once atomic.Bool
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey() != nil && once.CompareAndSwap(false, true) {
			env.TimeUnixNano -= 60 * sec // this proposal's clock runs behind
		}
		return apply(), nil
	})
	h.dueKey("k")
	h.settle(n)
	checkVersions(t, h.key("k"), 1)
	if st := n.s.Stats(); st.Rejected[fsm.CodeConflict] != 1 {
		t.Fatalf("stats %+v, want one conflict rejection", st)
	}
	h.advance(9 * time.Second)
	h.settle(n)
	if c := n.p.calls.Load(); c != 1 {
		t.Fatalf("%d proposals during the backoff, want 1 (no spinning)", c)
	}
	h.advance(time.Second)
	h.settle(n)
	checkVersions(t, h.key("k"), 2)
	ids := n.p.requestIDs()
	if len(ids) != 2 || ids[1] != ids[0]+"/retry1" {
		t.Fatalf("request IDs %q, want the retry to add /retry1", ids)
	}
	// The first ID is remembered with its rejection: reusing it could never
	// have succeeded.
	replay := envelope(KindRotate, h.key("k"), 1, h.now(), ids[0], []byte("m"))
	if res := h.apply(replay); !res.Duplicate || res.Err == nil {
		t.Fatalf("replay of the first ID: %+v, want its remembered rejection", res)
	}
}

// A rotation rejected because the key was disabled just before it applied
// must not shadow the rotation proposed when the key is enabled again: the
// key's history is part of the request ID.
func TestRejectionDoesNotShadowLaterState(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	var once atomic.Bool
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey() != nil && once.CompareAndSwap(false, true) {
			h.apply(disableKey(env.GetRotateKey().KeyId)) // a client write ordered first
		}
		return apply(), nil
	})
	h.dueKey("k")
	h.settle(n)
	if st := n.s.Stats(); st.Rejected[fsm.CodeDisabled] != 1 {
		t.Fatalf("stats %+v, want one Disabled rejection", st)
	}
	h.advance(500 * time.Second)
	h.settle(n)
	checkVersions(t, h.key("k"), 1)
	h.ok(enableKey("k"))
	h.settle(n)
	checkVersions(t, h.key("k"), 2)
	ids := n.p.requestIDs()
	if len(ids) != 2 || ids[0] == ids[1] || strings.Contains(ids[1], "retry") {
		t.Fatalf("request IDs %q: want a new ID from the new key state", ids)
	}
}

// One key whose material cannot be made, and one whose proposals keep
// failing, are retried with growing backoff while the others rotate.
func TestOneKeyFailureDoesNotStopOthers(t *testing.T) {
	h := newHarness(t)
	var fixed atomic.Bool
	errBusy := errors.New("test: busy")
	n := h.start(func(c *Config) {
		c.NewMaterial = func(id string, v uint32) ([]byte, error) {
			if id == "bad-material" && !fixed.Load() {
				return nil, errors.New("test: no entropy")
			}
			return []byte(fmt.Sprintf("sealed(%s,v%d)", id, v)), nil
		}
	})
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey().GetKeyId() == "bad-proposal" && !fixed.Load() {
			return nil, errBusy
		}
		return apply(), nil
	})
	h.dueKey("a", "bad-material", "bad-proposal", "b")
	h.settle(n)
	checkVersions(t, h.key("a"), 2)
	checkVersions(t, h.key("b"), 2)
	checkVersions(t, h.key("bad-material"), 1)
	checkVersions(t, h.key("bad-proposal"), 1)

	// Backoff 10 s, then 20 s: attempts at +0, +10, +30.
	for _, c := range []struct {
		advance  time.Duration
		attempts uint64
	}{{5 * time.Second, 1}, {5 * time.Second, 2}, {10 * time.Second, 2}, {10 * time.Second, 3}} {
		h.advance(c.advance)
		h.settle(n)
		if st := n.s.Stats(); st.MaterialErrors != c.attempts || st.NotApplied != c.attempts {
			t.Fatalf("after +%v: stats %+v, want %d failed attempts each", c.advance, st, c.attempts)
		}
	}
	fixed.Store(true)
	h.advance(40 * time.Second)
	h.settle(n)
	checkVersions(t, h.key("bad-material"), 2)
	checkVersions(t, h.key("bad-proposal"), 2)
}

// Two schedulers that both believe they lead (an old leader that has not
// noticed yet, and the new one) propose into the same log: every due
// rotation applies once, versions stay contiguous.
func TestTwoSchedulers(t *testing.T) {
	h := newHarness(t)
	a, b := h.start(), h.start()
	const keys, rounds = 40, 3
	var ids []string
	for i := range keys {
		id := fmt.Sprintf("key-%02d", i)
		ids = append(ids, id)
		h.ok(createKey(id))
		h.ok(enableRot(id, 100))
	}
	for r := 1; r <= rounds; r++ {
		h.advance(100 * time.Second)
		h.settle(a)
		h.settle(b)
		for _, id := range ids {
			checkVersions(t, h.key(id), r+1)
		}
	}
	sa, sb := a.s.Stats(), b.s.Stats()
	if got := sa.Applied + sb.Applied; got != keys*rounds {
		t.Fatalf("%d rotations applied, want %d (a %+v, b %+v)", got, keys*rounds, sa, sb)
	}
	for _, id := range ids {
		if got := countEvents(h.key(id), "RotateKey"); got != rounds {
			t.Fatalf("key %s: %d RotateKey events, want %d", id, got, rounds)
		}
	}
}

// The old leader's proposal is delayed until the new leader's has applied:
// the same intended change has the same request ID, so it is answered as a
// duplicate and the key rotates once.
func TestOldLeaderProposalDeduplicated(t *testing.T) {
	h := newHarness(t)
	oldLeader, newLeader := h.start(), h.start()
	// Both read the key before either applies: the new leader waits until
	// the old one has proposed, the old one's entry lands after the new one's.
	entered, applied := make(chan struct{}), make(chan struct{})
	var onceEntered, onceApplied sync.Once
	newLeader.p.setHook(func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey() == nil {
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
	oldLeader.p.setHook(func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		if env.GetRotateKey() != nil {
			onceEntered.Do(func() { close(entered) })
			select {
			case <-applied:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return apply(), nil
	})
	h.dueKey("k")
	h.settle(newLeader)
	h.settle(oldLeader)
	checkVersions(t, h.key("k"), 2)
	so, sn := oldLeader.s.Stats(), newLeader.s.Stats()
	if sn.Applied != 1 || so.Applied != 0 || so.Duplicates != 1 {
		t.Fatalf("old %+v, new %+v: want the old leader's proposal answered as a duplicate", so, sn)
	}
	if a, b := oldLeader.p.requestIDs(), newLeader.p.requestIDs(); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		t.Fatalf("request IDs old %q new %q: want the same", a, b)
	}
}
