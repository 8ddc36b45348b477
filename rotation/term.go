package rotation

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
)

// term is the scheduler's state for one term of leadership. Only its loop
// goroutine touches it; proposals run in worker goroutines (at most
// MaxInFlight, at most one per key) that report back on done. A worker
// proposes one change, or a batch of rotations (batch.go) as one entry.
type term struct {
	s   *Scheduler
	ctx context.Context
	h   *dueHeap // rotations
	// hd holds deletions and expiries, which destroy material. Both heaps
	// are due by this leader's own clock, which ClockTrusted vouches for;
	// they are kept apart so a backlog of one kind never hides the other.
	hd        *dueHeap
	retry     map[item]*retryState
	inflight  map[string]bool // key IDs with a proposal outstanding
	proposals int             // proposals outstanding (a batch is one)
	done      chan []outcome  // a worker's outcomes: one, or one per rotation of its batch
	counted   int64           // when countBacklog last counted (own clock)
	pace      pacer           // the rotations' token bucket (batch.go)
	paced     bool            // the last pass left due rotations to the pacer
}

// retryState is what the scheduler remembers about a change that failed,
// until it succeeds or stops being the change the key needs.
type retryState struct {
	guard      int64 // the change it belongs to (expected version, deletion time, ValidTo)
	failures   int   // consecutive failures, for the backoff
	at         int64 // not before, on the scheduler's clock
	hist       int   // key history length at the last definite rejection
	rejections int   // definite rejections at hist: the request ID's retry suffix
}

// outcome is a worker's report.
type outcome struct {
	it          item
	guard       int64
	hist        int
	requestID   string
	res         *fsm.Result
	err         error // from Propose
	materialErr error // from NewMaterial; nothing was proposed
	batch       bool  // proposed as an item of a RotateKeys entry
	// deferred: the change was not proposed, through no fault of its own (a
	// batch the cluster cannot take yet, or no room left in the entry); it
	// is rescheduled as if it had never started.
	deferred bool
}

func newTerm(s *Scheduler, ctx context.Context) *term {
	return &term{
		s:        s,
		ctx:      ctx,
		h:        newDueHeap(),
		hd:       newDueHeap(),
		retry:    map[item]*retryState{},
		inflight: map[string]bool{},
		done:     make(chan []outcome, s.cfg.MaxInFlight),
		pace:     newPacer(s.cfg.RotationRate, s.cfg.BatchSize),
	}
}

// loop wakes for the earliest due time, a change notification or a finished
// proposal. Each pass costs a clock reading, the dirty keys and the due
// entries — never a pass over all keys.
func (t *term) loop() {
	timer := time.NewTimer(t.s.cfg.Tick)
	defer timer.Stop()
	for {
		pass := t.s.passes.Add(1)
		now, own := t.s.now(), t.s.cfg.Now().UnixNano()
		t.applyDirty()
		held := !t.s.clockTrusted()
		if held {
			t.s.count(func(st *Stats) { st.ClockHeld++ })
		} else {
			t.dispatchDue(now, own)
		}
		t.countBacklog(now, own)
		if len(t.inflight) == 0 && !held && !t.paced {
			t.s.idlePass.Store(pass)
		}
		wait := t.s.cfg.Tick
		if _, at, ok := t.h.peek(); !held && ok && at > now && time.Duration(at-now) < wait {
			wait = time.Duration(at - now)
		}
		if t.paced && t.proposals < t.s.cfg.MaxInFlight {
			wait = min(wait, t.pace.wait())
		}
		if _, at, ok := t.hd.peek(); !held && ok && at > own && time.Duration(at-own) < wait {
			wait = time.Duration(at - own)
		}
		timer.Reset(wait)
		select {
		case <-t.ctx.Done():
			return
		case <-t.s.wake:
		case outs := <-t.done:
			t.proposals--
			for _, o := range outs {
				t.finish(o)
			}
		case <-timer.C:
		}
	}
}

// rebuild fills the heap from one pass over all keys: at the start of a term
// and after a Restore. Failure counts of changes still pending survive it.
func (t *term) rebuild() {
	t.h.reset()
	t.hd.reset()
	t.s.cfg.State.ForEachKey(func(k *fsm.Key) bool {
		if !t.inflight[k.ID] {
			t.place(k.ID, k)
		}
		return true
	})
	t.s.count(func(st *Stats) { st.Scans++ })
}

func (t *term) applyDirty() {
	ids, all := t.s.takeDirty()
	if all {
		t.rebuild()
		return
	}
	for _, id := range ids {
		t.refresh(id)
	}
}

// refresh re-reads one key and reschedules its changes. A key with a
// proposal in flight is refreshed when the proposal returns.
func (t *term) refresh(id string) {
	if t.inflight[id] {
		return
	}
	k, _ := t.s.cfg.State.Key(id)
	t.place(id, k)
}

// place puts key k's pending changes in the heap and removes the others; a
// nil k (the key is gone) removes all.
func (t *term) place(id string, k *fsm.Key) {
	for _, kind := range kinds {
		it := item{keyID: id, kind: kind}
		h := t.heapFor(kind)
		if k == nil {
			h.remove(it)
			delete(t.retry, it)
			continue
		}
		if at, _, ok := t.schedule(k, kind); ok {
			h.upsert(it, at)
		} else {
			h.remove(it)
		}
	}
}

// schedule says when to act on a change: when it is due, or later while a
// failure of the same change is backing off. Failure records of a change the
// key no longer needs are dropped here.
func (t *term) schedule(k *fsm.Key, kind Kind) (at int64, guard int64, ok bool) {
	it := item{keyID: k.ID, kind: kind}
	at, guard, ok = due(k, kind)
	r := t.retry[it]
	switch {
	case r == nil:
	case !ok || r.guard != guard:
		delete(t.retry, it)
	case r.at > at:
		at = r.at
	}
	return at, guard, ok
}

// heapFor is the heap of a kind of change.
func (t *term) heapFor(kind Kind) *dueHeap {
	if kind == KindRotate {
		return t.h
	}
	return t.hd
}

// nowFor is the time a kind of change is due by: see hd.
func (t *term) nowFor(kind Kind) int64 {
	if kind == KindRotate {
		return t.s.now()
	}
	return t.s.cfg.Now().UnixNano()
}

// nextDue pops the earliest entry that is due, from either heap, or only
// from the deletions' while rotations are false (the pacer holds them).
func (t *term) nextDue(now, own int64, rotations bool) (item, int64, int64, bool) {
	it, at, ok := t.h.peek()
	if rotations && ok && at <= now {
		if d, dat, dok := t.hd.peek(); dok && dat <= own && dat < at {
			t.hd.pop()
			return d, dat, own, true
		}
		t.h.pop()
		return it, at, now, true
	}
	if it, at, ok := t.hd.peek(); ok && at <= own {
		t.hd.pop()
		return it, at, own, true
	}
	return item{}, 0, 0, false
}

// dispatchDue starts proposals for the due entries, as far as the in-flight
// bound and the rotations' pacer allow; the rest wait in the heaps. Due
// rotations go out together: up to BatchSize of them as one RotateKeys entry
// once at least MinBatch are due and the cluster knows the event, else one
// entry each.
func (t *term) dispatchDue(now, own int64) {
	t.paced = false
	batching := t.batching()
	for t.proposals < t.s.cfg.MaxInFlight {
		rotations := t.pace.ready()
		it, _, byNow, ok := t.nextDue(now, own, rotations)
		if !ok {
			if !rotations {
				if _, at, due := t.h.peek(); due && at <= now {
					t.paced = true
				}
			}
			return
		}
		k, guard, ok := t.ready(it, byNow)
		if !ok {
			continue
		}
		if it.kind != KindRotate {
			t.start(it, k, guard)
			continue
		}
		t.pace.take(1)
		// A batch once MinBatch rotations are due (counted on the heap, so
		// nothing is taken out that would have to go back), else one entry.
		if !batching || !t.h.dueAtLeast(now, t.s.cfg.MinBatch-1) {
			t.start(it, k, guard)
			continue
		}
		group := []pick{{it: it, k: k, guard: guard}}
		for len(group) < t.s.cfg.BatchSize {
			it, at, ok := t.h.peek()
			if !ok || at > now {
				break
			}
			t.h.pop()
			if k, guard, ok := t.ready(it, now); ok {
				group = append(group, pick{it: it, k: k, guard: guard})
			}
		}
		t.pace.take(len(group) - 1)
		t.startBatch(group)
	}
}

// pick is a change chosen to start, with the key state it was decided from.
type pick struct {
	it    item
	k     *fsm.Key
	guard int64
}

// ready re-validates a popped entry against the key as it is now (the entry
// may predate a change whose notification has not arrived yet): it returns
// the key and guard when the change is to start now, and otherwise puts the
// entry back where it belongs.
func (t *term) ready(it item, byNow int64) (*fsm.Key, int64, bool) {
	if t.inflight[it.keyID] {
		return nil, 0, false // the key is refreshed when its proposal returns
	}
	k, found := t.s.cfg.State.Key(it.keyID)
	if !found {
		t.place(it.keyID, nil)
		return nil, 0, false
	}
	at, guard, ok := t.schedule(k, it.kind)
	switch {
	case !ok:
		return nil, 0, false
	case at > byNow:
		t.heapFor(it.kind).upsert(it, at)
		return nil, 0, false
	}
	return k, guard, true
}

// start hands one change to a worker.
func (t *term) start(it item, k *fsm.Key, guard int64) {
	hist := len(k.History)
	suffix := 0
	if r := t.retry[it]; r != nil && r.hist == hist {
		suffix = r.rejections
	}
	o := outcome{it: it, guard: guard, hist: hist, requestID: RequestID(it.kind, k.ID, guard, hist, suffix)}
	t.inflight[k.ID] = true
	t.proposals++
	t.s.count(func(st *Stats) { st.InFlight++ })
	go t.run(o, k)
}

// run builds and proposes one event; it always reports on done (which has
// room for every worker, so it never blocks).
func (t *term) run(o outcome, k *fsm.Key) {
	defer func() { t.done <- []outcome{o} }()
	var material []byte
	if o.it.kind == KindRotate {
		m, err := t.s.cfg.NewMaterial(k.ID, uint32(o.guard)+1)
		if err == nil && len(m) == 0 {
			err = errors.New("rotation: NewMaterial returned no material")
		}
		if err != nil {
			o.materialErr = err
			return
		}
		material = m
	}
	env := envelope(o.it.kind, k, o.guard, t.s.cfg.Now().UnixNano(), o.requestID, material)
	ctx, cancel := context.WithTimeout(t.ctx, t.s.cfg.ProposeTimeout)
	defer cancel()
	t.s.count(func(st *Stats) { st.Proposed++ })
	o.res, o.err = t.s.cfg.Proposer.Propose(ctx, env)
	if o.err == nil && o.res == nil {
		o.err = errors.New("rotation: Propose returned neither a result nor an error")
	}
}

// finish handles a worker's report: count it, remember a failure for the
// backoff, and re-read the key — never assume what an error means for the
// state.
func (t *term) finish(o outcome) {
	delete(t.inflight, o.it.keyID)
	t.s.record(o, t.ctx.Err() != nil)
	it := o.it
	if o.deferred {
		t.refresh(it.keyID)
		return
	}
	r := t.retry[it]
	if r == nil || r.guard != o.guard {
		r = &retryState{guard: o.guard}
	}
	switch {
	case o.materialErr == nil && o.err == nil && o.res.Err == nil:
		delete(t.retry, it) // done (or done before, by another proposer)
		t.refresh(it.keyID)
		return
	case o.materialErr == nil && o.err == nil:
		// A definite rejection. The same request ID would replay it, so the
		// next attempt at this same key state gets a new suffix. After an
		// ambiguous error (below) the ID must stay the same.
		if r.hist != o.hist {
			r.hist, r.rejections = o.hist, 0
		}
		r.rejections++
	}
	r.failures++
	r.at = t.nowFor(it.kind) + int64(t.s.backoff(r.failures))
	t.retry[it] = r
	t.refresh(it.keyID)
}

// drain waits for the term's outstanding proposals, which its cancelled
// context cuts short.
func (t *term) drain() {
	for t.proposals > 0 {
		t.proposals--
		for _, o := range <-t.done {
			delete(t.inflight, o.it.keyID)
			t.s.record(o, true)
		}
	}
}

// record counts and logs an outcome. ending is true when the term is over,
// so errors are expected and logged quietly.
func (s *Scheduler) record(o outcome, ending bool) {
	log := s.log.With("key", o.it.keyID, "change", o.it.kind.String(), "request_id", o.requestID)
	if o.batch {
		// One line per batch (batch.go); per rotation only when debugging.
		log = hclog.NewNullLogger()
		if s.log.IsDebug() {
			log = s.log.With("key", o.it.keyID, "change", o.it.kind.String(), "batch", true)
		}
	}
	switch {
	case o.deferred:
		s.count(func(st *Stats) { st.InFlight-- })
	case o.materialErr != nil:
		s.count(func(st *Stats) { st.InFlight--; st.MaterialErrors++ })
		log.Warn("cannot make new key material; will retry", "error", o.materialErr)
	case o.err != nil:
		may := s.cfg.MayHaveApplied(o.err)
		s.count(func(st *Stats) {
			st.InFlight--
			if may {
				st.Ambiguous++
			} else {
				st.NotApplied++
			}
		})
		if ending {
			log.Debug("proposal cut short by the end of the term", "error", o.err, "may_have_applied", may)
		} else {
			log.Warn("proposal failed; will re-read the key and retry", "error", o.err, "may_have_applied", may)
		}
	case o.res.Err != nil:
		code := rejectionCode(o.res.Err)
		s.count(func(st *Stats) {
			st.InFlight--
			st.Rejected[code]++
			if o.res.Duplicate {
				st.Duplicates++
			}
		})
		log.Info("proposal rejected; will re-read the key", "reason", o.res.Err, "code", code, "duplicate", o.res.Duplicate)
	default:
		s.count(func(st *Stats) {
			st.InFlight--
			if o.res.Duplicate {
				st.Duplicates++
			} else {
				st.Applied++
			}
		})
		log.Info("change applied", "version", o.res.Version, "index", o.res.Index, "duplicate", o.res.Duplicate)
	}
}
