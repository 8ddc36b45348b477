package rpc

import (
	"context"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// Proposer puts events in the replicated log: a *raftnode.Node on a real
// node, an in-memory log in rpc's own tests.
type Proposer interface {
	// Propose applies one event through the log (leader only; ErrNotLeader
	// elsewhere) and returns the state machine's result.
	Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error)
	// IsLeader reports whether this node leads now.
	IsLeader() bool
	// Leader names the current leader ("" when none is known).
	Leader() (id, raftAddr string)
	// CatchUp waits until a new leader's state covers its term.
	CatchUp(ctx context.Context) error
	// SubscribeLeadership reports this node's leadership changes (true on
	// gaining it) until the returned cancel is called.
	SubscribeLeadership() (<-chan bool, func())
}

// Reader is what linearizable reads need (DESIGN §5).
type Reader interface {
	// ReadIndex is the leader's commit index, confirmed (leader only).
	ReadIndex(ctx context.Context) (uint64, error)
	// WaitApplied waits until this node has applied index.
	WaitApplied(ctx context.Context, index uint64) error
}

// Membership is what ClusterService needs of the Raft node.
type Membership interface {
	Addr() string
	State() string
	Term() uint64
	AppliedIndex() uint64
	LastIndex() uint64
	LastSnapshotIndex() uint64
	Members() ([]raftnode.Member, error)
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, toID string) error
	Snapshot() error
	// Shutdown stops the node's Raft side (a node that must not serve).
	Shutdown() error
}

// Node is everything rpc needs of the node's Raft side.
type Node interface {
	Proposer
	Reader
	Membership
}

var _ Node = (*raftnode.Node)(nil)
