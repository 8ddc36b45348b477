package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// AddVoter adds a voting member (or updates its address). Leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return errors.New("raftnode: AddVoter needs an ID and an address")
	}
	return n.configChange(ctx, func(d time.Duration) raft.IndexFuture {
		return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, d)
	})
}

// RemoveServer removes a member. Leader only; a leader may remove itself, and
// then steps down once the change commits.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("raftnode: RemoveServer needs an ID")
	}
	return n.configChange(ctx, func(d time.Duration) raft.IndexFuture {
		return n.raft.RemoveServer(raft.ServerID(id), 0, d)
	})
}

func (n *Node) configChange(ctx context.Context, start func(time.Duration) raft.IndexFuture) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	d, err := n.timeout(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	if err := n.await(ctx, start(d), deadline); err != nil {
		return n.writeErr(err)
	}
	return nil
}

// TransferLeadership hands leadership to toID, or to the most up-to-date
// follower when toID is empty, and waits until the hand-over is done.
// Leader only.
func (n *Node) TransferLeadership(ctx context.Context, toID string) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	d, err := n.timeout(ctx)
	if err != nil {
		return err
	}
	var f raft.Future
	if toID == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		members, err := n.Members()
		if err != nil {
			return err
		}
		addr := ""
		for _, m := range members {
			if m.ID == toID && m.Voter {
				addr = m.Addr
			}
		}
		if addr == "" {
			return fmt.Errorf("%w: %s is not a voter", ErrUnknownServer, toID)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(toID), raft.ServerAddress(addr))
	}
	if err := n.await(ctx, f, time.Now().Add(d)); err != nil {
		return n.readErr(err)
	}
	return nil
}

// Snapshot takes a snapshot now (and compacts the log). Having nothing new
// to snapshot is not an error.
func (n *Node) Snapshot() error {
	if n.closed.Load() {
		return ErrShutdown
	}
	err := n.raft.Snapshot().Error()
	if err == nil || errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return n.readErr(err)
}
