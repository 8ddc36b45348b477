package rpc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// peerAt is a peer answer measured just now: the peer's clock is offset
// ahead of this node's, known within ±rtt/2.
type peerAt struct {
	offset, rtt time.Duration
	term        uint64
	age         time.Duration // how long ago it was measured
}

// setPeers makes s believe it measured peers (by node ID) as given, with
// itself a voter.
func setPeers(s *Server, peers map[string]peerAt) {
	wall, mono := s.now().UnixNano(), time.Now()
	c := &s.clockSt
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members, c.selfVoter, c.others = true, true, nil
	c.samples = map[string]clockSample{}
	for id, p := range peers {
		c.others = append(c.others, id)
		if p.term == 0 {
			continue // a voter that never answered
		}
		mid := int64(p.offset)
		c.samples[id] = clockSample{lo: mid - int64(p.rtt)/2, hi: mid + int64(p.rtt)/2,
			wall: wall - int64(p.age), mono: mono.Add(-p.age), term: p.term}
	}
}

// TestClockView: when a leader's clock is trusted, from its measurements
// of the other voters (the harness node is in term 1).
func TestClockView(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name    string
		peers   map[string]peerAt
		trusted bool
		agree   int
		offset  time.Duration // this node's clock minus the median
	}{
		{"all agree", map[string]peerAt{"b": {offset: time.Second, rtt: ms, term: 1}, "c": {offset: -2 * time.Second, rtt: ms, term: 1}}, true, 3, 0},
		{"a quorum agrees", map[string]peerAt{"b": {offset: time.Second, rtt: ms, term: 1}, "c": {offset: time.Hour, rtt: ms, term: 1}}, true, 2, -time.Second},
		{"this clock 6 h ahead", map[string]peerAt{"b": {offset: -6 * time.Hour, rtt: ms, term: 1}, "c": {offset: -6 * time.Hour, rtt: ms, term: 1}}, false, 1, 6 * time.Hour},
		{"this clock 6 h behind", map[string]peerAt{"b": {offset: 6 * time.Hour, rtt: ms, term: 1}, "c": {offset: 6 * time.Hour, rtt: ms, term: 1}}, false, 1, -6 * time.Hour},
		{"round trip too slow to vouch", map[string]peerAt{"b": {offset: 0, rtt: 21 * time.Second, term: 1}, "c": {offset: 0, rtt: 21 * time.Second, term: 1}}, false, 1, 0},
		{"just within the bound", map[string]peerAt{"b": {offset: 9 * time.Second, rtt: 2 * ms, term: 1}, "c": {offset: 11 * time.Second, rtt: 2 * ms, term: 1}}, true, 2, -9 * time.Second},
		{"answers of an earlier term", map[string]peerAt{"b": {offset: 0, rtt: ms, term: 7}, "c": {offset: 0, rtt: ms, term: 7}}, false, 1, 0},
		{"answers too old", map[string]peerAt{"b": {offset: 0, rtt: ms, term: 1, age: 2 * clockSampleTTL}, "c": {offset: 0, rtt: ms, term: 1, age: 2 * clockSampleTTL}}, false, 1, 0},
		{"one answer of two voters", map[string]peerAt{"b": {offset: 0, rtt: ms, term: 1}, "c": {}}, true, 2, 0},
		{"five voters, two agree", map[string]peerAt{"b": {offset: 0, rtt: ms, term: 1}, "c": {offset: 0, rtt: ms, term: 1},
			"d": {offset: time.Hour, rtt: ms, term: 1}, "e": {offset: time.Hour, rtt: ms, term: 1}}, true, 3, 0},
		{"five voters, one agrees", map[string]peerAt{"b": {offset: 0, rtt: ms, term: 1}, "c": {offset: time.Hour, rtt: ms, term: 1},
			"d": {offset: time.Hour, rtt: ms, term: 1}, "e": {offset: time.Hour, rtt: ms, term: 1}}, false, 2, -time.Hour},
		{"alone", map[string]peerAt{}, true, 1, 0},
	}
	for _, tc := range cases {
		h := newHarness(t)
		setPeers(h.srv, tc.peers)
		v := h.srv.clockView()
		if v.Trusted != tc.trusted || v.Agree != tc.agree || (v.Offset-tc.offset).Abs() > 10*ms {
			t.Errorf("%s: trusted=%v agree=%d offset=%v, want trusted=%v agree=%d offset=%v",
				tc.name, v.Trusted, v.Agree, v.Offset, tc.trusted, tc.agree, tc.offset)
		}
	}
}

// TestClockJumpCountsAtOnce: a jump of this node's own clock after the
// last round is seen at once (against the monotonic clock), not a second
// later at the next round.
func TestClockJumpCountsAtOnce(t *testing.T) {
	h := newHarness(t)
	setPeers(h.srv, map[string]peerAt{"b": {rtt: time.Millisecond, term: 1}, "c": {rtt: time.Millisecond, term: 1}})
	if !h.srv.ClockTrusted() {
		t.Fatal("not trusted before the jump")
	}
	h.clock.Advance(time.Hour)
	v := h.srv.clockView()
	if v.Trusted || (v.Offset-time.Hour).Abs() > time.Second {
		t.Fatalf("after a 1 h jump: trusted=%v offset=%v", v.Trusted, v.Offset)
	}
	h.clock.Advance(-time.Hour)
	if !h.srv.ClockTrusted() {
		t.Fatal("not trusted once the clock is back")
	}
}

// TestClockSuccessor: a leader whose clock disagrees hands leadership to a
// voter whose clock agrees with a quorum, and to nobody when none does.
func TestClockSuccessor(t *testing.T) {
	ms := time.Millisecond
	h := newHarness(t)
	setPeers(h.srv, map[string]peerAt{"b": {offset: -6 * time.Hour, rtt: ms, term: 1}, "c": {offset: -6*time.Hour + time.Second, rtt: ms, term: 1}})
	if got := h.srv.clockSuccessor(); got != "b" && got != "c" {
		t.Fatalf("successor %q, want b or c", got)
	}
	setPeers(h.srv, map[string]peerAt{"b": {offset: -6 * time.Hour, rtt: ms, term: 1}, "c": {offset: 6 * time.Hour, rtt: ms, term: 1}})
	if got := h.srv.clockSuccessor(); got != "" {
		t.Fatalf("successor %q when no two clocks agree", got)
	}
}

// TestStampRefusesUntrustedLeader: a leader whose clock disagrees refuses
// client writes (Unavailable, naming the offset), while a RegisterNode is
// stamped so that it cannot move the state's clock.
func TestStampRefusesUntrustedLeader(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	h.createKey("owner", nil) // sets the state's clock
	clock := h.f.Clock()
	h.clock.Advance(6 * time.Hour)
	setPeers(h.srv, map[string]peerAt{"b": {offset: -6 * time.Hour, rtt: time.Millisecond, term: 1}, "c": {offset: -6 * time.Hour, rtt: time.Millisecond, term: 1}})
	before := len(h.node.proposed())
	_, err := h.kms("owner").CreateKey(ctx, &kmsv1.CreateKeyRequest{})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.Unavailable || !strings.Contains(msg, "clock") ||
		!(strings.Contains(msg, "5h59m59") || strings.Contains(msg, "6h0m0")) {
		t.Fatalf("CreateKey on a leader 6 h ahead: %v", err)
	}
	if n := len(h.node.proposed()); n != before {
		t.Fatalf("%d events proposed by the skewed leader", n-before)
	}
	env := &eventsv1.Envelope{Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{NodeId: "node1"}}}
	if err := h.srv.stamp(ctx, env); err != nil {
		t.Fatal(err)
	}
	if env.TimeUnixNano > clock {
		t.Fatalf("RegisterNode stamped %v past the state's clock", time.Duration(env.TimeUnixNano-clock))
	}
}

// TestCatchUpClock: after an idle spell longer than the state machine's
// clock step, the leader first proposes RegisterNode events that only move
// the state's clock, until it is within half a step of its own; then the
// write, stamped with its own time.
func TestCatchUpClock(t *testing.T) {
	h := newHarness(t)
	h.createKey("owner", nil)
	h.clock.Advance(3 * time.Hour)
	before := len(h.node.proposed())
	h.createKey("owner", nil)
	envs := h.node.proposed()[before:]
	if len(envs) < int(3*time.Hour/maxClockStep) {
		t.Fatalf("%d events for a 3 h lag", len(envs))
	}
	for _, e := range envs[:len(envs)-1] {
		if e.GetRegisterNode().GetNodeId() != "node1" || e.Principal != clockPrincipal {
			t.Fatalf("catch-up event %v", e)
		}
	}
	last := envs[len(envs)-1]
	if last.GetCreateKey() == nil || last.TimeUnixNano != h.f.Clock() || h.clock.Now().UnixNano()-h.f.Clock() > int64(maxClockStep/2) {
		t.Fatalf("the write %v applied at %v, own clock %v", last.Event, time.Unix(0, h.f.Clock()), h.clock.Now())
	}
}

// TestJoinRootKeyChecks: a Join whose root-key check is missing or is not
// the cluster's is refused before the node becomes a voter, naming both
// root-key IDs; the right one joins.
func TestJoinRootKeyChecks(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	if err := h.srv.RegisterSelf(ctx); err != nil {
		t.Fatal(err)
	}
	cluster, clusterID := h.f.RootKeyCheck()
	if !bytes.Equal(cluster, h.srv.root.CheckValue()) {
		t.Fatal("RegisterSelf did not record this node's root key")
	}
	other, err := keycrypto.NewRootKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	join := func(check []byte, id string) error {
		_, err := h.cluster("node2").Join(ctx, &clusterv1.JoinRequest{NodeId: "node2", RaftAddr: "10.0.0.2:7101", GrpcAddr: "10.0.0.2:7001",
			RootKeyCheck: check, RootKeyId: id})
		return err
	}
	err = join(other.CheckValue(), other.ID())
	if !IsRootKeyRefusal(err) || !strings.Contains(err.Error(), other.ID()) || !strings.Contains(err.Error(), clusterID) {
		t.Fatalf("Join with another root key: %v", err)
	}
	if err := join(nil, ""); !IsRootKeyRefusal(err) {
		t.Fatalf("Join without a root-key check: %v", err)
	}
	if members, _ := h.node.Members(); len(members) != 1 {
		t.Fatalf("a refused node became a member: %v", members)
	}
	if err := join(h.srv.root.CheckValue(), h.srv.root.ID()); err != nil {
		t.Fatalf("Join with the cluster's root key: %v", err)
	}
}

// TestWrongRootKeyProposesNothing: once the state records another root key
// than this node's, it proposes nothing — no client write, nothing for its
// scheduler — and says why.
func TestWrongRootKeyProposesNothing(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	other, err := keycrypto.NewRootKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	// Another node registered first, with the cluster's (other) root key.
	if _, err := h.node.Propose(ctx, &eventsv1.Envelope{TimeUnixNano: h.clock.Now().UnixNano(), Event: &eventsv1.Envelope_RegisterNode{
		RegisterNode: &eventsv1.RegisterNode{NodeId: "node2", GrpcAddr: "10.0.0.2:7001", RaftAddr: "10.0.0.2:7101",
			RootKeyCheck: other.CheckValue(), RootKeyId: other.ID()}}}); err != nil {
		t.Fatal(err)
	}
	before := len(h.node.proposed())
	_, err = h.kms("owner").CreateKey(ctx, &kmsv1.CreateKeyRequest{})
	want := "this node's root key " + h.srv.root.ID() + " is not the cluster's " + other.ID()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Fatalf("CreateKey on a node with the wrong root key: %v", err)
	}
	if n := len(h.node.proposed()); n != before {
		t.Fatalf("%d events proposed by a node with the wrong root key", n-before)
	}
	if h.srv.ClockReady() {
		t.Fatal("the scheduler's gate is open on a node with the wrong root key")
	}
	var wrong *RootKeyError
	if err := h.srv.VerifyRootKey(ctx); !errors.As(err, &wrong) || wrong.Cluster != other.ID() {
		t.Fatalf("VerifyRootKey: %v", err)
	}
}
