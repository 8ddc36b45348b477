package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Propose appends one event to the log and waits until this node has applied
// it, returning the state machine's result. A deterministic rejection is a
// normal result (Result.Err); the error is non-nil only when the outcome is
// not known to be applied:
//
//   - ErrNotLeader (a *NotLeaderError), ErrBusy, ErrShutdown, or ctx's error
//     before the entry was handed to Raft: surely not applied;
//   - ErrAmbiguous (also wrapping ctx's error when ctx ended): it may still
//     commit; retry only with the same request ID.
//
// An envelope too large to be a log entry is refused before proposing, with
// an error wrapping fsm.ErrValidation.
//
// The wait is bounded by ctx and by Config.ApplyTimeout.
func (n *Node) Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	n.capSchema(env)
	if need := fsm.MinSchema(env); need > env.SchemaVersion {
		// An older member would halt on this event, or apply it otherwise:
		// refused, surely not applied, the same answer on every retry until
		// every member runs a build that knows it.
		return &fsm.Result{Err: &fsm.Rejection{Code: fsm.CodeUnsupported, Msg: fmt.Sprintf(
			"the cluster is being upgraded: some members know only event schema %d, and this change needs schema %d; "+
				"upgrade every node first", env.SchemaVersion, need)}}, nil
	}
	data, err := fsm.EncodeEntry(env)
	if err != nil {
		return nil, fmt.Errorf("raftnode: encode entry: %w", err)
	}
	if n.closed.Load() {
		return nil, ErrShutdown
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := n.timeout(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(d)
	term := n.raft.CurrentTerm()
	f := n.raft.Apply(data, d)
	if err := n.await(ctx, f, deadline); err != nil {
		return nil, n.writeErr(err)
	}
	// Acknowledge only once every lease holder has the entry (lease.go).
	actx, cancel := context.WithDeadline(ctx, deadline)
	err = n.waitAck(actx, f.Index(), term)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: committed, but not yet known to every lease holder: %w", ErrAmbiguous, err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok || res == nil {
		// Apply only ever returns *fsm.Result; anything else is a bug, and the
		// entry did commit.
		return nil, fmt.Errorf("%w: unexpected apply response %T", ErrAmbiguous, f.Response())
	}
	return res, nil
}

// CatchUp returns once this leader's state machine has applied every entry
// committed before its term: a Barrier the first time in a term, free after.
// A leader that decides a write from its local state (does the key exist,
// which version is current) calls it first, because leadership is gained
// before the state machine has caught up with what earlier leaders
// acknowledged.
func (n *Node) CatchUp(ctx context.Context) error {
	if n.readyTerm.Load() == n.raft.CurrentTerm() {
		return nil
	}
	return n.Barrier(ctx)
}

// Barrier waits until every entry before it is applied to this node's state
// machine. It only works on the leader; a new leader calls it before serving
// reads or scheduling work, because leadership is gained before the state
// machine has caught up with the term.
func (n *Node) Barrier(ctx context.Context) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	d, err := n.timeout(ctx)
	if err != nil {
		return err
	}
	term := n.raft.CurrentTerm()
	deadline := time.Now().Add(d)
	if err := n.await(ctx, n.raft.Barrier(d), deadline); err != nil {
		return n.readErr(err)
	}
	// The barrier entry was appended and committed in term, by this node.
	if n.raft.CurrentTerm() == term {
		n.readyTerm.Store(term)
	}
	return nil
}

// timeout is the time left for an operation: ApplyTimeout or ctx's deadline.
func (n *Node) timeout(ctx context.Context) (time.Duration, error) {
	d := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < d {
			d = left
		}
	}
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}

// waitAborted says the caller stopped waiting for a future that is still
// pending.
type waitAborted struct{ cause error }

func (e waitAborted) Error() string { return e.cause.Error() }
func (e waitAborted) Unwrap() error { return e.cause }

// await waits for a raft future until ctx ends or the deadline passes.
// Raft's futures cannot be cancelled; the waiting goroutine ends when the
// future resolves, which raft guarantees (commit, step-down or shutdown).
func (n *Node) await(ctx context.Context, f raft.Future, deadline time.Time) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var cause error
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cause = ctx.Err()
	case <-t.C:
		cause = context.DeadlineExceeded
	case <-n.doneCh:
		cause = raft.ErrRaftShutdown
	}
	// A future that already failed (an enqueue timeout, say) says more than
	// the timer that fired with it.
	select {
	case err := <-done:
		return err
	default:
		return waitAborted{cause}
	}
}

// notLeader builds the not-leader error with the leader this node knows of.
func (n *Node) notLeader() error {
	id, addr := n.Leader()
	if id == n.cfg.NodeID {
		// A leader handing over (or stepping down) answers not-leader too;
		// pointing at itself would only loop the caller.
		id, addr = "", ""
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// writeErr maps the error of an operation that appends to the log. Only
// errors raised before the entry reached the log mean "surely not applied";
// everything else is ambiguous (DESIGN §10).
func (n *Node) writeErr(err error) error {
	var aborted waitAborted
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrBusy
	case errors.As(err, &aborted):
		return fmt.Errorf("%w: %w", ErrAmbiguous, aborted.cause)
	default:
		// ErrLeadershipLost, ErrRaftShutdown after enqueue, and anything
		// raft may add later.
		return fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
}

// readErr maps the error of an operation that changes nothing a caller
// cares about (verify, barrier, configuration reads).
func (n *Node) readErr(err error) error {
	var aborted waitAborted
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrLeadershipLost):
		return n.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrBusy
	case errors.As(err, &aborted):
		return aborted.cause
	default:
		return fmt.Errorf("raftnode: %w", err)
	}
}
