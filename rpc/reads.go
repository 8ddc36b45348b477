package rpc

import (
	"context"
	"errors"

	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc/metadata"
)

// staleOK reports whether this read may skip the read-index round: the node
// is configured so, or the caller asked with the x-raftkms-stale-ok header.
func (s *Server) staleOK(ctx context.Context) bool {
	if s.readMode == ReadModeStale {
		return true
	}
	return first(metadata.ValueFromIncomingContext(ctx, MDStaleOK)) == "true"
}

// readBarrier makes a read linearizable (DESIGN §5): it learns a read index
// (the leader's commit index, confirmed by VerifyLeader) and waits until this
// node has applied that far. On the leader, concurrent calls share one
// VerifyLeader round; on a follower they share one round trip to the leader.
func (s *Server) readBarrier(ctx context.Context) error {
	if s.staleOK(ctx) {
		s.reads.stale.Add(1)
		return nil
	}
	if rs := readStateOf(ctx); rs != nil {
		rs.checked = true
	}
	if ln, ok := s.node.(leaseNode); ok && s.readMode == ReadModeLease {
		leased, err := s.leaseBarrier(ctx, ln)
		if err != nil || leased {
			if leased {
				s.reads.lease.Add(1)
			}
			return err
		}
	}
	s.reads.index.Add(1)
	var idx uint64
	var err error
	if s.node.IsLeader() {
		idx, err = s.node.ReadIndex(ctx)
	}
	if !s.node.IsLeader() || errors.Is(err, raftnode.ErrNotLeader) {
		idx, err = s.readIdx.Get(ctx)
	}
	if err != nil {
		return err
	}
	return s.node.WaitApplied(ctx, idx)
}
