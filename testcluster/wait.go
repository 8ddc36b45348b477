package testcluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// pollInterval is how often the Wait helpers look again.
const pollInterval = 10 * time.Millisecond

// poll calls cond until it returns true or the deadline passes; it reports
// whether cond came true.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-t.C
	}
}

// Leader returns the index of the running node that is leader, or -1. When
// two nodes believe they lead (an old leader that has not noticed its
// isolation yet), the one with the higher term wins.
func (c *Cluster) Leader() int {
	idx, nodes, _ := c.live()
	best, term := -1, uint64(0)
	for k, n := range nodes {
		if n.IsLeader() {
			if t := n.Term(); best < 0 || t > term {
				best, term = idx[k], t
			}
		}
	}
	return best
}

// WaitForLeader waits until a running node is leader and returns its index.
func (c *Cluster) WaitForLeader(t testing.TB) int {
	t.Helper()
	leader := -1
	if !poll(WaitTimeout, func() bool { leader = c.Leader(); return leader >= 0 }) {
		t.Fatalf("testcluster: no leader after %v:\n%s", WaitTimeout, c.describe())
	}
	return leader
}

// WaitForApplied waits until every running node's state machine has applied
// the log up to index.
func (c *Cluster) WaitForApplied(t testing.TB, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	idx, nodes, _ := c.live()
	for k, n := range nodes {
		if err := n.WaitApplied(ctx, index); err != nil {
			t.Fatalf("testcluster: node %d did not apply index %d: %v\n%s", idx[k], index, err, c.describe())
		}
	}
}

// WaitConverged waits until there is a leader, every running node has applied
// the leader's whole log, and all of their state machines have the same
// digest. On failure it prints each node's indexes and digest.
func (c *Cluster) WaitConverged(t testing.TB) {
	t.Helper()
	if !poll(WaitTimeout, c.converged) {
		t.Fatalf("testcluster: nodes did not converge in %v:\n%s", WaitTimeout, c.describe())
	}
}

func (c *Cluster) converged() bool {
	leader := c.Leader()
	if leader < 0 {
		return false
	}
	last := c.Node(leader).LastIndex()
	_, nodes, fsms := c.live()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var digest [32]byte
	for k, n := range nodes {
		if n.AppliedIndex() != last || n.WaitApplied(ctx, last) != nil {
			return false
		}
		d := fsms[k].Digest()
		if k == 0 {
			digest = d
		} else if d != digest {
			return false
		}
	}
	// Nothing was appended while we looked.
	return c.Node(leader).LastIndex() == last
}

// describe is a per-node summary for failure messages.
func (c *Cluster) describe() string {
	var b strings.Builder
	c.mu.Lock()
	members := append([]*member(nil), c.nodes...)
	alive := make([]bool, len(members))
	for i, m := range members {
		alive[i] = m.alive
	}
	c.mu.Unlock()
	for i, m := range members {
		if !alive[i] {
			fmt.Fprintf(&b, "  %d %s: down\n", i, m.id)
			continue
		}
		n := m.node
		d := m.fsm.Digest()
		lid, _ := n.Leader()
		fmt.Fprintf(&b, "  %d %s: state=%s term=%d leader=%q last=%d commit=%d applied=%d fsm_applied=%d snapshot=%d digest=%s\n",
			i, m.id, n.State(), n.Term(), lid, n.LastIndex(), n.CommitIndex(), n.AppliedIndex(),
			m.fsm.AppliedIndex(), n.LastSnapshotIndex(), hex.EncodeToString(d[:8]))
	}
	return b.String()
}

// Propose sends env to the leader, following leader changes: errors that
// mean the entry was surely not applied (ErrNotLeader, ErrShutdown, ErrBusy)
// are retried until ctx ends. ErrAmbiguous is returned to the caller, who
// may retry with the same request ID.
func (c *Cluster) Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	delay := 5 * time.Millisecond
	for {
		var err error
		if leader := c.Leader(); leader >= 0 {
			var res *fsm.Result
			res, err = c.Node(leader).Propose(ctx, env)
			if err == nil {
				return res, nil
			}
			if !errors.Is(err, raftnode.ErrNotLeader) && !errors.Is(err, raftnode.ErrShutdown) &&
				!errors.Is(err, raftnode.ErrBusy) {
				return nil, err
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = errors.New("no leader")
			}
			return nil, fmt.Errorf("testcluster: propose: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}
