package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/raftkms/raftkms/raftnode"
)

// Membership changes, leadership transfer and restarts from an empty data
// directory. Like Kill and Restart, these run on the test's goroutine.

// bootstrapPeers is the configuration node m bootstraps with when its data
// directory is empty: the original members all share one; a node added
// with AddNode has none and is added by the leader instead.
func (c *Cluster) bootstrapPeers(m *member) []raftnode.Peer {
	if m.joined {
		return nil
	}
	return c.peers
}

// joinAddr is the gRPC address a node added with AddNode joins through
// when it starts: the leader's, or any other running member's.
func (c *Cluster) joinAddr(m *member) string {
	if !m.joined {
		return ""
	}
	if l := c.Leader(); l >= 0 && c.nodes[l] != m {
		return c.nodes[l].grpcAddr
	}
	idx, _, _ := c.live()
	for _, i := range idx {
		if c.nodes[i] != m && !c.Removed(i) {
			return c.nodes[i].grpcAddr
		}
	}
	return ""
}

// AddNode starts a new node with an empty data directory and adds it to
// the cluster as a voter, and returns its index. In an API cluster the node
// joins through a member's gRPC API (as kmsd --join does) in the
// background: WaitServing waits for it. Otherwise the leader adds it here.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	id := fmt.Sprintf("node%d", i)
	ep, err := c.net.Listen(id, "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("testcluster: AddNode: listen: %v", err)
	}
	m := &member{id: id, addr: ep.Addr().String(), dir: filepath.Join(c.t.TempDir(), id), joined: true}
	if c.opts.api != nil {
		m.grpcAddr = freeAddr(c.t)
	}
	// The directory above is removed at the end of the test before the
	// cluster's own shutdown runs (cleanups run last-in first-out): stop
	// this node first.
	c.t.Cleanup(func() { c.stop(i, false) })
	c.mu.Lock()
	c.nodes = append(c.nodes, m)
	c.mu.Unlock()
	if err := c.start(i, ep); err != nil {
		c.t.Fatalf("testcluster: AddNode: start %s: %v", id, err)
	}
	if c.opts.api == nil {
		c.membershipChange("add "+id, func(ctx context.Context, n *raftnode.Node) error {
			return n.AddVoter(ctx, id, m.addr)
		})
	}
	return i
}

// RemoveNode takes node i out of the Raft configuration through the leader
// (which may be node i itself: it steps down once the change commits), then
// kills it. A removed node is never restarted by RestartDead.
func (c *Cluster) RemoveNode(i int) {
	c.t.Helper()
	id := c.ID(i)
	c.membershipChange("remove "+id, func(ctx context.Context, n *raftnode.Node) error {
		return n.RemoveServer(ctx, id)
	})
	c.mu.Lock()
	c.nodes[i].removed = true
	c.mu.Unlock()
	if c.Alive(i) {
		c.Kill(i)
	}
}

// membershipChange runs change on the leader until it succeeds, following
// leader changes. Adding or removing a server twice is harmless, so
// ambiguous errors are retried too.
func (c *Cluster) membershipChange(what string, change func(context.Context, *raftnode.Node) error) {
	c.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	var last error
	for {
		if l := c.Leader(); l >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			last = change(ctx, c.Node(l))
			cancel()
			if last == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: %s: %v\n%s", what, last, c.describe())
		}
		time.Sleep(20 * time.Millisecond) // backoff before asking the leader again
	}
}

// Removed reports whether node i was taken out with RemoveNode.
func (c *Cluster) Removed(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].removed
}

// Members lists the leader's latest Raft configuration.
func (c *Cluster) Members() ([]raftnode.Member, error) {
	l := c.Leader()
	if l < 0 {
		return nil, errors.New("testcluster: no leader")
	}
	return c.Node(l).Members()
}

// TransferLeadership asks the leader to hand leadership to node to (any
// up-to-date voter when to < 0) and waits until the hand-over is done. It
// returns the error instead of failing the test: a transfer may fail under
// faults, as it may in production.
func (c *Cluster) TransferLeadership(to int) error {
	l := c.Leader()
	if l < 0 {
		return errors.New("testcluster: no leader")
	}
	id := ""
	if to >= 0 {
		id = c.ID(to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Node(l).TransferLeadership(ctx, id)
}

// RestartFresh restarts a killed node on an empty data directory, as after
// a disk replacement: it has to catch up from the leader's snapshot. (An
// original member bootstraps the same initial configuration as its peers,
// which the leader's log agrees with; do it while the cluster has a stable
// leader, because a node that forgot its vote could vote twice in the term
// of an election that is still running.)
func (c *Cluster) RestartFresh(i int) {
	c.t.Helper()
	if c.Alive(i) {
		c.t.Fatalf("testcluster: RestartFresh(%d): node is running", i)
	}
	if err := os.RemoveAll(c.nodes[i].dir); err != nil {
		c.t.Fatalf("testcluster: RestartFresh(%d): %v", i, err)
	}
	c.Restart(i)
}

// RestartDead restarts every killed node that is still a member.
func (c *Cluster) RestartDead() {
	c.t.Helper()
	c.mu.Lock()
	n := len(c.nodes)
	c.mu.Unlock()
	for i := range n {
		if !c.Alive(i) && !c.Removed(i) {
			c.Restart(i)
		}
	}
}

// HealAll undoes every network fault (cuts, delays, drops, blackholes,
// held nodes) and resumes paused nodes and held apply paths. Killed nodes
// stay down (see RestartDead).
func (c *Cluster) HealAll() {
	c.net.ClearFaults()
	c.net.Heal()
	c.mu.Lock()
	n := len(c.nodes)
	c.mu.Unlock()
	for i := range n {
		c.Resume(i)
	}
}
