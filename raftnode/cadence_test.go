package raftnode_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/raftnode"
)

// A node whose snapshot timer never fires (here: an hour; in the field: it
// is restarted more often than SnapshotInterval) still snapshots once its
// log exceeds SnapshotThreshold: at its next start.
func TestSnapshotThresholdSurvivesRestarts(t *testing.T) {
	addr := freeAddrs(t, 1)[0]
	dir := t.TempDir()
	start := func() *raftnode.Node {
		t.Helper()
		f, err := fsm.New(fsm.Config{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := raftnode.New(raftnode.Config{
			NodeID: "n0", RaftBindAddr: addr, DataDir: dir, FSM: f,
			Peers:             []raftnode.Peer{{ID: "n0", Addr: addr}},
			Logger:            hclog.New(&hclog.LoggerOptions{Name: "n0", Level: hclog.Warn, Output: os.Stderr}),
			HeartbeatTimeout:  100 * time.Millisecond,
			ElectionTimeout:   100 * time.Millisecond,
			SnapshotThreshold: 50,
			SnapshotInterval:  time.Hour,
			TrailingLogs:      10,
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	waitLeader(t, []testNode{{node: n}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 80 {
		if _, err := n.Propose(ctx, createKey(fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.LastSnapshotIndex(); got != 0 {
		t.Fatalf("snapshot at %d before any restart; the test needs the timer not to fire", got)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	n = start()
	t.Cleanup(func() { n.Shutdown() })
	deadline := time.Now().Add(20 * time.Second)
	for n.LastSnapshotIndex() < 80 {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after restart: last snapshot index %d, applied %d", n.LastSnapshotIndex(), n.AppliedIndex())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// Below the threshold a restart takes no snapshot.
func TestNoSnapshotBelowThreshold(t *testing.T) {
	addr := freeAddrs(t, 1)[0]
	f, err := fsm.New(fsm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := raftnode.Config{
		NodeID: "n0", RaftBindAddr: addr, DataDir: t.TempDir(), FSM: f,
		Peers:             []raftnode.Peer{{ID: "n0", Addr: addr}},
		HeartbeatTimeout:  100 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
		SnapshotThreshold: 1000,
		SnapshotInterval:  time.Hour,
	}
	n, err := raftnode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitLeader(t, []testNode{{node: n}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := n.Propose(ctx, createKey(fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	n.Shutdown()
	if cfg.FSM, err = fsm.New(fsm.Config{}); err != nil {
		t.Fatal(err)
	}
	n, err = raftnode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	waitLeader(t, []testNode{{node: n}})
	if err := n.WaitApplied(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if got := n.LastSnapshotIndex(); got != 0 {
		t.Fatalf("snapshot at %d with 20 entries under a threshold of 1000", got)
	}
}
