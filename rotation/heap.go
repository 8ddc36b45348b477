package rotation

import "container/heap"

// item names one pending change: a key and what is due for it.
type item struct {
	keyID string
	kind  Kind
}

type entry struct {
	item
	due   int64 // Unix nanoseconds
	index int   // position in the heap, kept by Swap
}

// dueHeap is a min-heap of due times with at most one entry per item. It is
// indexed, so a change notification moves a key's entry in place instead of
// piling up stale duplicates; entries are still re-validated against the
// state when they reach the top (state may have moved on before the
// notification arrived). Only the term's loop goroutine touches it.
type dueHeap struct {
	entries []*entry
	index   map[item]*entry
}

func newDueHeap() *dueHeap {
	return &dueHeap{index: map[item]*entry{}}
}

// heap.Interface, on entries.
func (h *dueHeap) Len() int { return len(h.entries) }
func (h *dueHeap) Less(i, j int) bool {
	a, b := h.entries[i], h.entries[j]
	if a.due != b.due {
		return a.due < b.due
	}
	// A total order keeps the pop order deterministic for equal due times.
	if a.keyID != b.keyID {
		return a.keyID < b.keyID
	}
	return a.kind < b.kind
}
func (h *dueHeap) Swap(i, j int) {
	h.entries[i], h.entries[j] = h.entries[j], h.entries[i]
	h.entries[i].index = i
	h.entries[j].index = j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(h.entries)
	h.entries = append(h.entries, e)
}
func (h *dueHeap) Pop() any {
	n := len(h.entries) - 1
	e := h.entries[n]
	h.entries[n] = nil
	h.entries = h.entries[:n]
	e.index = -1
	return e
}

// upsert schedules it at due, moving an existing entry.
func (h *dueHeap) upsert(it item, due int64) {
	if e, ok := h.index[it]; ok {
		if e.due != due {
			e.due = due
			heap.Fix(h, e.index)
		}
		return
	}
	e := &entry{item: it, due: due}
	h.index[it] = e
	heap.Push(h, e)
}

// remove drops it if scheduled.
func (h *dueHeap) remove(it item) {
	if e, ok := h.index[it]; ok {
		heap.Remove(h, e.index)
		delete(h.index, it)
	}
}

// peek returns the earliest entry without removing it.
func (h *dueHeap) peek() (item, int64, bool) {
	if len(h.entries) == 0 {
		return item{}, 0, false
	}
	e := h.entries[0]
	return e.item, e.due, true
}

// pop removes and returns the earliest entry.
func (h *dueHeap) pop() (item, int64, bool) {
	if len(h.entries) == 0 {
		return item{}, 0, false
	}
	e := heap.Pop(h).(*entry)
	delete(h.index, e.item)
	return e.item, e.due, true
}

// reset empties the heap, for a rebuild.
func (h *dueHeap) reset() {
	clear(h.entries)
	h.entries = h.entries[:0]
	clear(h.index)
}

// dueAtLeast reports whether at least n entries are due by now, visiting at
// most n of them (a heap's children are never due earlier).
func (h *dueHeap) dueAtLeast(now int64, n int) bool {
	if n <= 0 {
		return true
	}
	found := 0
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(h.entries) || h.entries[i].due > now {
			continue
		}
		if found++; found >= n {
			return true
		}
		stack = append(stack, 2*i+1, 2*i+2)
	}
	return false
}
