package rotation

import "time"

// OverdueAfter is how long a change may stay due before the scheduler's
// Stats count it as overdue: longer than a few proposals and backoffs take
// on a healthy leader.
const OverdueAfter = time.Minute

// backlogEvery bounds how often a term recounts its backlog for Stats.
const backlogEvery = time.Second

// Backlog is what is due and not yet done, as the leader's scheduler saw it
// at its last count (at most a second old). It is zero on a node that does
// not lead.
type Backlog struct {
	Due     int // changes due now (waiting for a slot, in flight or backing off after a failure)
	Overdue int // of those, the ones due for longer than OverdueAfter
	// OldestRotationDue is the due time (Unix nanoseconds, scheduler clock)
	// of the earliest automatic rotation still pending; 0 when none is due.
	OldestRotationDue int64
	// CountedAt is when the count was made (Unix nanoseconds, scheduler
	// clock); 0 when no term has counted.
	CountedAt int64
}

// countBacklog publishes the term's backlog to Stats, at most once per
// backlogEvery. It visits only due entries (a pruned walk of each heap) plus
// the keys in flight or backing off, never every key.
func (t *term) countBacklog(now, own int64) {
	if t.counted != 0 && own-t.counted < int64(backlogEvery) {
		return
	}
	t.counted = own
	var b Backlog
	add := func(it item, at, byNow int64) {
		if at > byNow {
			return
		}
		b.Due++
		if byNow-at > int64(OverdueAfter) {
			b.Overdue++
		}
		if it.kind == KindRotate && (b.OldestRotationDue == 0 || at < b.OldestRotationDue) {
			b.OldestRotationDue = at
		}
	}
	// Keys in flight or backing off have left the heap (or sit in it at
	// their retry time): count them by their true due time, once, and skip
	// them in the heaps. The heaps hold an item at most once, so no other
	// entry needs remembering (a storm has every key due).
	counted := map[item]bool{}
	pending := func(id string, kinds []Kind) {
		k, ok := t.s.cfg.State.Key(id)
		for _, kind := range kinds {
			it := item{keyID: id, kind: kind}
			if counted[it] {
				continue
			}
			counted[it] = true
			if !ok {
				continue
			}
			if at, _, ok := due(k, kind); ok {
				add(it, at, t.nowFor(kind))
			}
		}
	}
	for id := range t.inflight {
		pending(id, kinds[:])
	}
	for it := range t.retry {
		pending(it.keyID, []Kind{it.kind})
	}
	walk := func(h *dueHeap, byNow int64) {
		stack := []int{0}
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if i >= len(h.entries) || h.entries[i].due > byNow {
				continue // a heap's children are never due earlier
			}
			if e := h.entries[i]; !counted[e.item] {
				add(e.item, e.due, byNow)
			}
			stack = append(stack, 2*i+1, 2*i+2)
		}
	}
	walk(t.h, now)
	walk(t.hd, own)
	b.CountedAt = own
	t.s.count(func(st *Stats) { st.Backlog = b })
}
