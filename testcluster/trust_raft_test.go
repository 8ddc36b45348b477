package testcluster_test

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
)

// The attacks below speak Raft with hashicorp/raft's own NetworkTransport
// (raftnode.Probe: only raftnode imports hashicorp/raft), from outside the
// cluster, over the test network, with certificates of the cluster CA.

// attacker is a Raft client on c's network presenting cert.
func attacker(t *testing.T, c *testcluster.Cluster, cert tls.Certificate) *raftnode.Probe {
	t.Helper()
	dial := c.Network().Dialer("attacker")
	p := raftnode.NewProbe(raftnode.ProbeConfig{
		Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return dial(ctx, addr)
		},
		TLS:     pki.ClientConfig(cert, c.CAPool()),
		Timeout: 10 * time.Second,
	})
	t.Cleanup(func() { p.Close() })
	return p
}

// forgery is an AppendEntries that would extend follower f's log by data
// in its current term, as if from the leader l, and commit it: accepted, it
// diverges f from the cluster for good.
func forgery(t *testing.T, c *testcluster.Cluster, l, f int, data []byte) raftnode.ProbeAppend {
	t.Helper()
	n := c.Node(f)
	lastTerm, err := strconv.ParseUint(n.Stats()["last_log_term"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	last := n.LastIndex()
	return raftnode.ProbeAppend{
		SenderID: c.ID(l), SenderAddr: c.Addr(l), Term: n.Term(),
		PrevIndex: last, PrevTerm: lastTerm, Commit: last + 1, Entries: [][]byte{data},
	}
}

// forgedEntries are a valid event no client asked for and an entry no
// node can decode.
func forgedEntries(t *testing.T) []forged {
	t.Helper()
	valid, err := fsm.EncodeEntry(createKeyEnv("forged-key", "forged-req"))
	if err != nil {
		t.Fatal(err)
	}
	return []forged{{"forged event", valid}, {"undecodable entry", []byte{0xff, 0xfe, 0x00, 0x13, 0x37}}}
}

type forged struct {
	name string
	data []byte
}

// checkUnharmed: every node is up and agrees, the forged key exists
// nowhere, and the cluster still takes writes.
func checkUnharmed(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	ctx := apiCtx(t)
	must[*kmsv1.CreateKeyResponse](t, "CreateKey after the attack")(c.KMS(c.Leader()).CreateKey(ctx, &kmsv1.CreateKeyRequest{}))
	c.WaitConverged(t)
	for i := range c.N() {
		if !c.Alive(i) || c.Node(i).State() == "Shutdown" {
			t.Fatalf("node %d is down after the attack", i)
		}
		if _, ok := c.FSM(i).Key("forged-key"); ok {
			t.Fatalf("node %d applied the forged entry", i)
		}
	}
}

// TestRaftRefusesClientCertificate: a client certificate of the cluster CA
// sends a follower AppendEntries "from the leader" with a forged event and
// with an undecodable entry: both refused; no node diverges or crashes.
func TestRaftRefusesClientCertificate(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(0).CreateKey(apiCtx(t), &kmsv1.CreateKeyRequest{}))
	c.WaitConverged(t)
	l := c.Leader()
	f := (l + 1) % 3
	p := attacker(t, c, c.ClientCert("app"))
	for _, e := range forgedEntries(t) {
		if r, err := p.AppendEntries(c.Addr(f), forgery(t, c, l, f, e.data)); err == nil {
			t.Fatalf("%s from a client certificate: the follower answered (success=%v)", e.name, r.Success)
		}
	}
	checkUnharmed(t, c)
}

// TestRaftRefusesNodeImpersonatingLeader: node n3's own certificate sends a
// follower AppendEntries whose header claims leader n1: refused. The same
// certificate speaking as itself is heard (and told its term is stale), so
// the refusal is the identity check, not a broken probe.
func TestRaftRefusesNodeImpersonatingLeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	c.WaitConverged(t)
	l := c.Leader()
	f, x := (l+1)%3, (l+2)%3
	p := attacker(t, c, c.NodeTLS(c.ID(x)).Client.Certificates[0])
	for _, e := range forgedEntries(t) {
		if r, err := p.AppendEntries(c.Addr(f), forgery(t, c, l, f, e.data)); err == nil {
			t.Fatalf("%s from %s's certificate claiming leader %s: answered (success=%v)", e.name, c.ID(x), c.ID(l), r.Success)
		}
	}
	term := c.Node(f).Term()
	r, err := p.AppendEntries(c.Addr(f), raftnode.ProbeAppend{SenderID: c.ID(x), SenderAddr: c.Addr(x), Term: 1})
	if err != nil {
		t.Fatalf("%s speaking as itself was not heard: %v", c.ID(x), err)
	}
	if r.Success || r.Term < term {
		t.Fatalf("stale AppendEntries answered success=%v term=%d (current %d)", r.Success, r.Term, term)
	}
	checkUnharmed(t, c)
}

// TestSilentRaftConnectionsStallNothing: a hundred connections to every
// node's Raft port that never send a ClientHello hold up no one: a node's
// handshake still completes, and with the leader killed the others elect
// and commit, all well within the (one-minute) handshake timeout.
func TestSilentRaftConnectionsStallNothing(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS(), testcluster.WithRaftHandshakeTimeout(time.Minute)))
	c.WaitServing(t)
	dial := c.Network().Dialer("attacker")
	for i := range c.N() {
		for range 100 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := dial(ctx, c.Addr(i)) // past the test network's preface, then silent
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
		}
	}
	l := c.Leader()
	f, x := (l+1)%3, (l+2)%3
	p := attacker(t, c, c.NodeTLS(c.ID(x)).Client.Certificates[0])
	if _, err := p.AppendEntries(c.Addr(f), raftnode.ProbeAppend{SenderID: c.ID(x), SenderAddr: c.Addr(x), Term: 1}); err != nil {
		t.Fatalf("a node's Raft handshake behind 100 silent connections: %v", err)
	}

	c.Kill(l)
	nl := c.WaitForLeader(t)
	must[*kmsv1.CreateKeyResponse](t, "CreateKey under a new leader")(c.KMS(nl).CreateKey(apiCtx(t), &kmsv1.CreateKeyRequest{}))
	c.Restart(l)
	c.WaitConverged(t)
}
