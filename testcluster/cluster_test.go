package testcluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
)

// TestLaggingFollowerInstallsSnapshot cuts a follower off while the leader
// writes far more than it keeps in its log; once healed, the follower can
// only catch up by installing the leader's snapshot.
func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	const threshold, trailing = 64, 16
	c := testcluster.New(t, 3, testcluster.WithSnapshots(threshold, trailing))
	leader := c.WaitForLeader(t)
	mustPropose(t, c, createKeyEnv("before", "create-before"))
	c.WaitConverged(t)

	f := (leader + 1) % 3
	c.Isolate(f)
	lag := c.Node(f).LastIndex()
	restores := c.Node(f).Restores()

	ids := writeKeys(t, c, "k", 200)
	// The follower's next entry must be gone from the leader's log.
	leader = c.WaitForLeader(t)
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for c.Node(leader).LastSnapshotIndex() <= lag+trailing+1 {
		if time.Now().After(deadline) {
			t.Fatalf("leader did not compact past index %d (last snapshot %d)", lag, c.Node(leader).LastSnapshotIndex())
		}
		mustPropose(t, c, tagKeyEnv("before", "", "t", time.Now().String()))
	}
	if got := c.Node(f).LastIndex(); got != lag {
		t.Fatalf("isolated follower's log moved from %d to %d", lag, got)
	}

	c.Heal()
	c.WaitConverged(t)
	if got := c.Node(f).Restores(); got <= restores {
		t.Fatalf("follower caught up without installing a snapshot (restores %d -> %d)", restores, got)
	}
	t.Logf("follower %d lagged at index %d, installed a snapshot (last snapshot index %d), now at %d",
		f, lag, c.Node(f).LastSnapshotIndex(), c.Node(f).AppliedIndex())
	for _, id := range append(ids, "before") {
		if _, ok := c.FSM(f).Key(id); !ok {
			t.Fatalf("follower lacks key %s after catching up", id)
		}
	}
}

// TestRestartAllFromDisk kills every node and restarts them from their data
// directories: the state comes back from snapshot plus log, byte for byte.
func TestRestartAllFromDisk(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithSnapshots(64, 32))
	c.WaitForLeader(t)
	writeKeys(t, c, "k", 120)
	c.WaitConverged(t)
	// Every node snapshots, then more entries follow: a restart has to
	// restore the snapshot and replay the log after it.
	for i := range c.N() {
		if err := c.Node(i).Snapshot(); err != nil {
			t.Fatalf("node %d snapshot: %v", i, err)
		}
		if c.Node(i).LastSnapshotIndex() == 0 {
			t.Fatalf("node %d has no snapshot", i)
		}
	}
	ids := writeKeys(t, c, "tail", 20)
	c.WaitConverged(t)
	want := c.FSM(0).Digest()

	for i := range c.N() {
		c.Kill(i)
	}
	for i := range c.N() {
		c.Restart(i)
	}
	c.WaitForLeader(t)
	c.WaitConverged(t)
	for i := range c.N() {
		if got := c.FSM(i).Digest(); got != want {
			t.Fatalf("node %d digest after restart %x, before %x", i, got[:8], want[:8])
		}
		if c.Node(i).Restores() == 0 {
			t.Fatalf("node %d did not restore its snapshot at start-up", i)
		}
		if _, ok := c.FSM(i).Key(ids[len(ids)-1]); !ok {
			t.Fatalf("node %d lost key %s", i, ids[len(ids)-1])
		}
	}
	// The restarted cluster takes writes.
	res := mustPropose(t, c, createKeyEnv("after", "create-after"))
	c.WaitForApplied(t, res.Index)
	for i := range c.N() {
		if _, ok := c.FSM(i).Key("after"); !ok {
			t.Fatalf("node %d lacks a key written after the restart", i)
		}
	}
}

// TestPartitionedLeaderStepsDown puts the leader in a minority: the majority
// elects a new leader, the old one refuses writes, and healing converges.
func TestPartitionedLeaderStepsDown(t *testing.T) {
	c := testcluster.New(t, 3)
	old := c.WaitForLeader(t)
	mustPropose(t, c, createKeyEnv("k0", "create-k0"))
	others := []int{(old + 1) % 3, (old + 2) % 3}
	c.Partition([]int{old}, others)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Node(old).Propose(ctx, createKeyEnv("lost", "create-lost"))
	if err == nil {
		t.Fatalf("isolated old leader acknowledged a write")
	}
	if !errors.Is(err, raftnode.ErrNotLeader) && !errors.Is(err, raftnode.ErrAmbiguous) {
		t.Fatalf("isolated old leader: err = %v", err)
	}
	mustPropose(t, c, createKeyEnv("k1", "create-k1"))
	if l := c.Leader(); l == old {
		t.Fatalf("isolated node %d is still the leader", old)
	}
	c.Heal()
	c.WaitConverged(t)
	if _, ok := c.FSM(old).Key("k1"); !ok {
		t.Fatalf("old leader lacks k1 after healing")
	}
	// An entry the old leader appended in the minority was never committed:
	// it is gone everywhere (it was reported as ambiguous or not-leader).
	for i := range c.N() {
		if _, ok := c.FSM(i).Key("lost"); ok && errors.Is(err, raftnode.ErrNotLeader) {
			t.Fatalf("node %d applied an entry reported as not applied", i)
		}
	}
}

// TestOneWayCut checks the fault network's one-way links: a leader that can
// send but not hear back loses leadership.
func TestOneWayCut(t *testing.T) {
	c := testcluster.New(t, 3)
	l := c.WaitForLeader(t)
	for i := range c.N() {
		if i != l {
			c.Network().Cut(c.ID(i), c.ID(l))
		}
	}
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for c.Node(l).IsLeader() || c.Leader() < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("leader %d kept leadership without hearing from followers", l)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	c.Heal()
	mustPropose(t, c, createKeyEnv("k", "create-k"))
	c.WaitConverged(t)
}
