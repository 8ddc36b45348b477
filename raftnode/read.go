package raftnode

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// maxGapScan bounds how many log entries WaitApplied inspects to see whether
// the state machine still has work queued.
const maxGapScan = 1024

// verifier batches VerifyLeader calls: each costs a heartbeat round to a
// quorum, so concurrent callers share one. A caller never joins a round that
// began before its call (that round could predate a newer leader); it starts
// one or waits for the next.
type verifier struct {
	n      *Node
	mu     sync.Mutex
	cur    *verifyRound // in flight
	next   *verifyRound // starts when cur ends; everyone waiting joins it
	rounds atomic.Uint64
}

type verifyRound struct {
	done chan struct{}
	err  error
}

func (v *verifier) join() *verifyRound {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cur == nil {
		v.cur = &verifyRound{done: make(chan struct{})}
		go v.run(v.cur)
		return v.cur
	}
	if v.next == nil {
		v.next = &verifyRound{done: make(chan struct{})}
	}
	return v.next
}

func (v *verifier) run(r *verifyRound) {
	for r != nil {
		v.rounds.Add(1)
		r.err = v.n.raft.VerifyLeader().Error()
		close(r.done)
		v.mu.Lock()
		v.cur, v.next = v.next, nil
		r = v.cur
		v.mu.Unlock()
	}
}

// VerifyLeader confirms with a quorum that this node is still the leader, in
// a round that starts after the call. Concurrent calls share rounds.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	r := n.verify.join()
	select {
	case <-r.done:
		if r.err != nil {
			return n.readErr(r.err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.doneCh:
		return ErrShutdown
	}
}

// VerifyRounds counts the VerifyLeader rounds this node has run (rounds are
// shared, so it is at most the number of calls).
func (n *Node) VerifyRounds() uint64 { return n.verify.rounds.Load() }

// ReadIndex returns an index such that every write acknowledged before the
// call is at or below it: the leader's commit index, confirmed by a
// VerifyLeader round. Only the leader can answer; others return ErrNotLeader.
// A reader then calls WaitApplied(index) on the node it reads from.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.closed.Load() {
		return 0, ErrShutdown
	}
	if !n.IsLeader() {
		return 0, n.notLeader()
	}
	// A new leader's commit index only covers the earlier terms' entries once
	// an entry of its own term has committed: Barrier makes sure of that, once
	// per term.
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		if err := n.Barrier(ctx); err != nil {
			return 0, err
		}
		if n.readyTerm.Load() != term {
			return 0, ErrStaleRead
		}
	}
	index := n.raft.CommitIndex()
	if err := n.VerifyLeader(ctx); err != nil {
		return 0, err
	}
	// Still leader of the same term: the commit index read above was this
	// leader's, and no other leader can have acknowledged anything since.
	if n.raft.CurrentTerm() != term {
		return 0, ErrStaleRead
	}
	return index, nil
}

// WaitApplied waits until this node's state machine has applied the log up
// to index (not merely until Raft has queued it for the state machine).
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	var t *time.Timer
	for {
		changed := n.adapter.changed()
		if n.consumed(index) {
			if t != nil {
				t.Stop()
			}
			return nil
		}
		if n.closed.Load() {
			return ErrShutdown
		}
		// Entries the state machine never sees (no-ops, barriers) do not
		// wake us, so poll as well.
		if t == nil {
			t = time.NewTimer(2 * time.Millisecond)
		} else {
			t.Reset(2 * time.Millisecond)
		}
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-n.doneCh:
			t.Stop()
			return ErrShutdown
		}
	}
}

// consumed reports whether the state machine has consumed every entry up to
// index. It may say no too early, never yes too early.
func (n *Node) consumed(index uint64) bool {
	fa := n.adapter.applied.Load()
	if fa >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	// Raft has handed everything up to index to the FSM goroutine. The state
	// machine has consumed it unless a command or configuration entry in
	// (fa, index] is still queued; the rest (no-ops, barriers) it never sees.
	// Entries up to the last snapshot are consumed too: the state machine made
	// or restored that snapshot.
	from := fa + 1
	var snap uint64
	snapKnown := false
	if index-fa > 64 {
		snap, snapKnown = n.LastSnapshotIndex(), true
		if snap >= index {
			return true
		}
		from = max(from, snap+1)
		if index-from >= maxGapScan {
			return false
		}
	}
	for i := from; i <= index; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			if !errors.Is(err, raft.ErrLogNotFound) {
				return false
			}
			if !snapKnown {
				snap, snapKnown = n.LastSnapshotIndex(), true
			}
			if i > snap {
				return false
			}
			continue
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}
