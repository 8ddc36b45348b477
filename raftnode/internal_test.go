package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// singleNode starts a one-node cluster, which elects itself.
func singleNode(t *testing.T) *Node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f, _ := fsm.New(fsm.Config{})
	n, err := New(Config{NodeID: "solo", RaftBindAddr: addr, DataDir: t.TempDir(), FSM: f,
		Peers: []Peer{{ID: "solo", Addr: addr}}, HeartbeatTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("single node did not elect itself")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	return n
}

// TestWriteErrClassification pins DESIGN §10: only errors raised before the
// entry reached the log say "not applied"; everything else is ambiguous.
func TestWriteErrClassification(t *testing.T) {
	n := singleNode(t)
	cases := []struct {
		err       error
		want      error
		ambiguous bool
	}{
		{raft.ErrNotLeader, ErrNotLeader, false},
		{raft.ErrLeadershipTransferInProgress, ErrNotLeader, false},
		{raft.ErrEnqueueTimeout, ErrBusy, false},
		{raft.ErrLeadershipLost, ErrAmbiguous, true},
		{raft.ErrRaftShutdown, ErrAmbiguous, true},
		{raft.ErrAbortedByRestore, ErrAmbiguous, true},
		{errors.New("disk on fire"), ErrAmbiguous, true},
		{waitAborted{context.DeadlineExceeded}, context.DeadlineExceeded, true},
		{waitAborted{context.Canceled}, context.Canceled, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			got := n.writeErr(tc.err)
			if !errors.Is(got, tc.want) {
				t.Fatalf("writeErr(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if errors.Is(got, ErrAmbiguous) != tc.ambiguous {
				t.Fatalf("writeErr(%v) = %v: ambiguous = %v, want %v", tc.err, got, !tc.ambiguous, tc.ambiguous)
			}
		})
	}
}

// TestWaitAppliedSeesOnlyTheStateMachine checks that WaitApplied answers for
// indexes the state machine never sees (no-ops, barriers) and for restored
// snapshots, and that the adapter's snapshot framing round-trips.
func TestWaitAppliedSeesOnlyTheStateMachine(t *testing.T) {
	n := singleNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Right after election the log holds the bootstrap configuration and the
	// leader's no-op, and Barrier adds one more entry the FSM never sees.
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitApplied(ctx, idx); err != nil {
		t.Fatalf("WaitApplied(%d) over no-ops and barriers: %v", idx, err)
	}
	// A future index is not reported applied.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := n.WaitApplied(short, n.LastIndex()+5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied(future index) = %v, want a deadline error", err)
	}

	// Snapshot framing: persist into a buffer and restore into a new FSM.
	env := &eventsv1.Envelope{TimeUnixNano: 1, RequestId: "r1", Event: &eventsv1.Envelope_CreateKey{
		CreateKey: &eventsv1.CreateKey{KeyId: "k1", Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: []byte("m")}}}
	if res, err := n.Propose(ctx, env); err != nil || res.Err != nil {
		t.Fatalf("Propose: %v %v", err, res)
	}
	f2, _ := fsm.New(fsm.Config{})
	snap, _ := n.adapter.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("Persist: %v (closed %v)", err, sink.closed)
	}
	a2 := &fsmAdapter{f: f2}
	if err := a2.Restore(sink); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if a2.applied.Load() != n.adapter.applied.Load() || a2.restores.Load() != 1 {
		t.Fatalf("restored applied index %d, want %d", a2.applied.Load(), n.adapter.applied.Load())
	}
	if f2.Digest() != n.cfg.FSM.Digest() {
		t.Fatalf("restored digest differs")
	}
	if err := a2.Restore(&memSink{data: []byte("not a snapshot at all")}); err == nil {
		t.Fatalf("Restore accepted a stream without the header")
	}
}

// memSink is an in-memory raft.SnapshotSink that is also a ReadCloser.
type memSink struct {
	data   []byte
	off    int
	closed bool
}

func (m *memSink) Write(p []byte) (int, error) { m.data = append(m.data, p...); return len(p), nil }
func (m *memSink) Close() error                { m.closed = true; return nil }
func (m *memSink) ID() string                  { return "mem" }
func (m *memSink) Cancel() error               { return nil }
func (m *memSink) Read(p []byte) (int, error) {
	if m.off >= len(m.data) {
		return 0, io.EOF
	}
	k := copy(p, m.data[m.off:])
	m.off += k
	return k, nil
}
