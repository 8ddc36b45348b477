package raftnode_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
	"github.com/raftkms/raftkms/raftnode"
)

// nodeTLS is node id's Raft TLS configuration with a certificate of ca.
func nodeTLS(t *testing.T, ca *pki.Authority, id string) raftnode.TLSConfig {
	t.Helper()
	srv, cli := tlsPair(t, ca, id)
	return raftnode.TLSConfig{Server: srv, Client: cli, NodeID: id}
}

func tlsPair(t *testing.T, ca *pki.Authority, id string) (*tls.Config, *tls.Config) {
	t.Helper()
	is, err := ca.IssueNode(id, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pki.ServerConfig(cert, pool), pki.ClientConfig(cert, pool)
}

// TestRaftOverTLSRefusesForeignNode: three nodes bootstrap together over
// mutual TLS, but node n2's certificate comes from another CA. n0 and n1
// form the cluster and commit; n2 is refused by both and never applies an
// entry.
func TestRaftOverTLSRefusesForeignNode(t *testing.T) {
	cluster, err := pki.NewAuthority("cluster CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewAuthority("foreign CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 3)
	var peers []raftnode.Peer
	for i, a := range addrs {
		peers = append(peers, raftnode.Peer{ID: fmt.Sprintf("n%d", i), Addr: a})
	}
	nodes := make([]testNode, 3)
	for i := range 3 {
		ca := cluster
		if i == 2 {
			ca = foreign
		}
		stream, err := raftnode.NewTLSStreamLayer(addrs[i], "", nodeTLS(t, ca, peers[i].ID))
		if err != nil {
			t.Fatal(err)
		}
		f, _ := fsm.New(fsm.Config{})
		node, err := raftnode.New(raftnode.Config{
			NodeID: peers[i].ID, DataDir: t.TempDir(), Peers: peers, FSM: f, StreamLayer: stream,
			Logger: hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Error, Output: os.Stderr}),
			// Production timings: two of three members over TLS must hold a
			// quorum even on a loaded machine (or under -race).
			CommitTimeout: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = testNode{node, f}
		t.Cleanup(func() { node.Shutdown() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// With two of three members and test timings, leadership may move
	// between n0 and n1 under load: propose again through the new leader
	// (a repeated request ID is answered, not applied twice).
	l := -1
	for i := range 5 {
		for {
			l = waitLeader(t, nodes[:2])
			_, err := nodes[l].node.Propose(ctx, createKey(fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", i)))
			if err == nil {
				break
			}
			t.Logf("propose k%d via %d: %v (state %s)", i, l, err, nodes[l].node.State())
			if ctx.Err() != nil {
				t.Fatalf("propose over TLS: %v", err)
			}
		}
	}
	other := 1 - l
	if err := nodes[other].node.WaitApplied(ctx, nodes[l].node.LastIndex()); err != nil {
		t.Fatalf("the other member did not apply over TLS: %v", err)
	}
	// The foreign node had every chance to hear of the entries: heartbeats
	// run every few milliseconds. Watch it for a while.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if nodes[2].fsm.KeyCount() != 0 || nodes[2].node.IsLeader() {
			t.Fatal("the node with a foreign certificate took part in the cluster")
		}
		time.Sleep(20 * time.Millisecond) // observing that nothing happens
	}
}
