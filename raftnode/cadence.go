package raftnode

import (
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotOnStart takes a snapshot soon after start when the log since the
// last snapshot already exceeds SnapshotThreshold.
//
// hashicorp/raft checks the threshold only when its snapshot timer fires
// (SnapshotInterval, randomized up to twice), and the timer starts anew with
// every process: a node restarted more often than that never snapshots and
// its log grows without bound. The entries themselves survive restarts, so
// checking them once at start, after the node has replayed its log, makes
// the threshold hold across any number of restarts.
func (n *Node) snapshotOnStart() {
	defer n.bg.Done()
	target := n.raft.LastIndex()
	// Wait (bounded) for the replay, so the snapshot covers the whole log.
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for n.raft.AppliedIndex() < target {
		select {
		case <-n.doneCh:
			return
		case <-deadline.C:
			target = n.raft.AppliedIndex()
		case <-tick.C:
		}
	}
	// Judge the log as it was at start: entries written since are the
	// snapshot timer's business, as on any running node.
	last, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	if target < last || target-last < n.cfg.SnapshotThreshold {
		return
	}
	applied := n.raft.AppliedIndex()
	start := time.Now()
	err := n.raft.Snapshot().Error()
	switch {
	case err == nil:
		n.logger.Info("snapshot at start: the log since the last snapshot was over the threshold",
			"entries", applied-last, "threshold", n.cfg.SnapshotThreshold, "took", time.Since(start))
	case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
	default:
		n.logger.Warn("snapshot at start failed", "error", err)
	}
}
