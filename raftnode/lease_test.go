package raftnode_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
)

// startLeaseCluster runs n nodes whose lease clocks run at the given rates.
func startLeaseCluster(t *testing.T, rates []float64, lease time.Duration, drift float64) []testNode {
	t.Helper()
	n := len(rates)
	addrs := freeAddrs(t, n)
	var peers []raftnode.Peer
	for i, a := range addrs {
		peers = append(peers, raftnode.Peer{ID: fmt.Sprintf("n%d", i), Addr: a})
	}
	nodes := make([]testNode, n)
	for i := range n {
		f, err := fsm.New(fsm.Config{})
		if err != nil {
			t.Fatal(err)
		}
		node, err := raftnode.New(raftnode.Config{
			NodeID: peers[i].ID, RaftBindAddr: addrs[i], DataDir: t.TempDir(), Peers: peers, FSM: f,
			Logger:           hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Warn, Output: os.Stderr}),
			HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
			LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			LeaseDuration: lease, LeaseMaxDrift: drift, LeaseClock: testcluster.RateClock(rates[i]),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = testNode{node, f}
		t.Cleanup(func() { node.Shutdown() })
	}
	return nodes
}

// pump carries one follower's lease stream to the leader in process, as
// rpc's stream does, until stopped.
type pump struct {
	stop chan struct{}
	done sync.WaitGroup
}

func startPump(from, leader *raftnode.Node) *pump {
	p := &pump{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(from.LeaseDuration() / 4)
		defer tick.Stop()
		for {
			appended := from.LeaseAppended()
			changed := leader.LeaseChanged()
			for {
				req := from.LeaseNext(true)
				if !from.LeaseGranted(leader.LeaseServe(from.ID(), req)) {
					break
				}
			}
			select {
			case <-tick.C:
			case <-appended:
			case <-changed:
				from.LeaseGranted(leader.LeasePush())
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *pump) halt() { close(p.stop); p.done.Wait() }

func waitLease(t *testing.T, n *raftnode.Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := n.LeaseRead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got a read lease", n.ID())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// TestLeaseHolderStopsBeforeTheLeaderAcknowledges is the heart of the lease
// rule: with clocks within the drift bound, a holder that stops renewing no
// longer trusts its lease by the time the leader acknowledges a write
// without it; with a holder's clock running far slower than the bound, it
// still does (a stale read would be served), which is the assumption the
// design rests on.
func TestLeaseHolderStopsBeforeTheLeaderAcknowledges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  float64 // the follower's clock rate
		stale bool    // whether the follower still trusts its lease at the ack
	}{
		{"within the bound (slow 1.5%)", 0.985, false},
		{"within the bound (fast 1.5%)", 1.015, false},
		{"beyond the bound (slow 5x)", 0.2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const lease, drift = 400 * time.Millisecond, 0.02
			// Every node gets the follower's rate except the first leader;
			// a leader change would only restart the scenario.
			rates := []float64{1, tc.rate, tc.rate}
			nodes := startLeaseCluster(t, rates, lease, drift)
			var l int
			deadline := time.Now().Add(10 * time.Second)
			for {
				l = waitLeader(t, nodes)
				if l == 0 {
					break
				}
				tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := nodes[l].node.TransferLeadership(tctx, "n0")
				tcancel()
				if err != nil {
					t.Logf("transfer: %v", err)
				}
				if time.Now().After(deadline) {
					t.Fatal("node 0 never led")
				}
				time.Sleep(50 * time.Millisecond) // polling with a deadline
			}
			leader := nodes[0].node
			pumps := []*pump{startPump(nodes[1].node, leader), startPump(nodes[2].node, leader)}
			defer func() {
				for _, p := range pumps[1:] {
					p.halt()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := leader.Propose(ctx, createKey("warm", "warm")); err != nil {
				t.Fatal(err)
			}
			f := nodes[1].node
			waitLease(t, f)
			waitLease(t, nodes[2].node)
			if got := leader.LeaseHolders(); got != 2 {
				t.Fatalf("leader counts %d holders, want 2", got)
			}
			pumps[0].halt() // node 1 falls silent on its lease stream
			res, err := leader.Propose(ctx, createKey("after", "after"))
			if err != nil || res.Err != nil {
				t.Fatalf("propose: %v %v", err, res)
			}
			leased, err := f.LeaseRead(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			holders := leader.LeaseHolders()
			t.Logf("follower clock rate %.3f: after the acknowledgement the leader counts %d holders; the silent follower trusts its lease: %v",
				tc.rate, holders, leased)
			if holders != 1 {
				t.Fatalf("the leader acknowledged while counting %d holders, want 1 (the silent one dropped)", holders)
			}
			if leased != tc.stale {
				t.Fatalf("the silent follower trusts its lease: %v, want %v", leased, tc.stale)
			}
			// The live holder has the entry in its log: its pending wait
			// makes a read of the key see it.
			if err := nodes[2].node.WaitPending(ctx, "after"); err != nil {
				t.Fatal(err)
			}
			if _, ok := nodes[2].fsm.Key("after"); !ok {
				t.Fatal("the holder that answered read the key without the acknowledged write")
			}
		})
	}
}

// TestLeaseNewLeaderWaitsOutOldLeases: a follower holds a lease from the
// leader; leadership moves to another node, which never hears from the
// follower. The new leader's first acknowledged write comes only after the
// follower stopped trusting the old leader's lease.
func TestLeaseNewLeaderWaitsOutOldLeases(t *testing.T) {
	const lease, drift = 400 * time.Millisecond, 0.02
	nodes := startLeaseCluster(t, []float64{1, 1, 1}, lease, drift)
	l := waitLeader(t, nodes)
	f, next := (l+1)%3, (l+2)%3
	p := startPump(nodes[f].node, nodes[l].node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[l].node.Propose(ctx, createKey("warm", "warm")); err != nil {
		t.Fatal(err)
	}
	waitLease(t, nodes[f].node)
	err := nodes[l].node.TransferLeadership(ctx, fmt.Sprintf("n%d", next))
	if err != nil {
		t.Logf("transfer: %v", err)
	}
	p.halt()
	var res *fsm.Result
	for {
		nl := waitLeader(t, nodes)
		res, err = nodes[nl].node.Propose(ctx, createKey("new-term", "new-term"))
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if err != nil || res.Err != nil {
		t.Fatalf("propose on the new leader: %v %v", err, res)
	}
	leased, err := nodes[f].node.LeaseRead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if leased {
		t.Fatal("the new leader acknowledged a write while the follower still trusted the old leader's lease")
	}
}
