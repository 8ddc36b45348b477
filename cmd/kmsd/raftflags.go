package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/raftkms/raftkms/raftnode"
)

// raftFlags are the Raft timing and snapshot settings of dev and serve.
// Their defaults are raftnode's; see docs/operations.md for how they were
// chosen and what to change on a slow or loaded machine.
type raftFlags struct {
	heartbeat, election, lease, commit time.Duration
	snapshotThreshold, trailingLogs    uint64
	snapshotInterval                   time.Duration
	readLease                          time.Duration
}

func (r *raftFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&r.heartbeat, "raft-heartbeat-timeout", raftnode.DefaultHeartbeatTimeout,
		"a follower that hears nothing from the leader for this long (randomized up to twice) starts an election")
	fs.DurationVar(&r.election, "raft-election-timeout", raftnode.DefaultElectionTimeout,
		"a candidate without a result after this long (randomized up to twice) starts a new election")
	fs.DurationVar(&r.lease, "raft-leader-lease-timeout", raftnode.DefaultLeaderLeaseTimeout,
		"a leader that cannot reach a quorum for this long steps down (at most --raft-heartbeat-timeout)")
	fs.DurationVar(&r.commit, "raft-commit-timeout", raftnode.DefaultCommitTimeout,
		"longest delay before followers learn of a commit when there is nothing else to send")
	fs.Uint64Var(&r.snapshotThreshold, "raft-snapshot-threshold", raftnode.DefaultSnapshotThreshold,
		"log entries since the last snapshot that make the node take a new one")
	fs.DurationVar(&r.snapshotInterval, "raft-snapshot-interval", raftnode.DefaultSnapshotInterval,
		"how often the snapshot threshold is checked (randomized up to twice)")
	fs.DurationVar(&r.readLease, "read-lease-duration", raftnode.DefaultLeaseDuration,
		"how long a read lease lasts: the longest a node that stops answering delays writes, and how long a new leader waits before acknowledging writes; the same on every node")
	fs.Uint64Var(&r.trailingLogs, "raft-trailing-logs", raftnode.DefaultTrailingLogs,
		"log entries kept after a snapshot, so that a follower this far behind catches up without a snapshot")
}

func (r *raftFlags) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--raft-heartbeat-timeout", r.heartbeat}, {"--raft-election-timeout", r.election},
		{"--raft-leader-lease-timeout", r.lease}, {"--raft-commit-timeout", r.commit}, {"--raft-snapshot-interval", r.snapshotInterval}, {"--read-lease-duration", r.readLease}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	if r.heartbeat < 5*time.Millisecond || r.election < 5*time.Millisecond {
		return errors.New("--raft-heartbeat-timeout and --raft-election-timeout must be at least 5ms")
	}
	if r.lease > r.heartbeat {
		return fmt.Errorf("--raft-leader-lease-timeout (%v) must not exceed --raft-heartbeat-timeout (%v)", r.lease, r.heartbeat)
	}
	if r.snapshotThreshold == 0 || r.trailingLogs == 0 {
		return errors.New("--raft-snapshot-threshold and --raft-trailing-logs must be positive")
	}
	return nil
}

// tune applies the flags to a node's Raft configuration.
func (r *raftFlags) tune(cfg *raftnode.Config) {
	cfg.HeartbeatTimeout = r.heartbeat
	cfg.ElectionTimeout = r.election
	cfg.LeaderLeaseTimeout = r.lease
	cfg.CommitTimeout = r.commit
	cfg.SnapshotThreshold = r.snapshotThreshold
	cfg.SnapshotInterval = r.snapshotInterval
	cfg.TrailingLogs = r.trailingLogs
	cfg.LeaseDuration = r.readLease
}
