package raftnode

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each says whether the entry may have been applied, because
// that decides what a caller may do next: an entry that surely was not applied
// may be proposed again anywhere; an ambiguous one may only be retried with
// the same request ID, so that the state machine's idempotency applies it once.
var (
	// ErrNotLeader means this node is not the leader: the entry was surely
	// not applied. The error is a *NotLeaderError that names the leader when
	// it is known.
	ErrNotLeader = errors.New("raftnode: not the leader")

	// ErrAmbiguous means the entry was handed to Raft but the outcome is
	// unknown (leadership lost, shut down, timed out or cancelled while it
	// was in flight): it may still commit under the next leader.
	ErrAmbiguous = errors.New("raftnode: outcome unknown, the entry may or may not be applied")

	// ErrBusy means the leader did not accept the entry in time; it was
	// surely not applied.
	ErrBusy = errors.New("raftnode: leader too busy to accept the entry")

	// ErrShutdown means the node was shut down before the call was made; the
	// entry was surely not applied.
	ErrShutdown = errors.New("raftnode: node is shut down")

	// ErrStaleRead means the read index could not be confirmed (for example
	// the term changed during the round); retry.
	ErrStaleRead = errors.New("raftnode: read index not confirmed")

	// ErrUnknownServer is returned when a server ID is not a cluster member.
	ErrUnknownServer = errors.New("raftnode: unknown server")
)

// NotLeaderError is ErrNotLeader with a hint where the leader is. LeaderID
// and LeaderAddr (its Raft address) are empty when no leader is known.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

// Error says where the leader is, when known.
func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "raftnode: not the leader (no leader known)"
	}
	return fmt.Sprintf("raftnode: not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true for every *NotLeaderError.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
