package testcluster_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// TestSharedEndpoint: a shared endpoint (a node's gRPC port) puts peers'
// connections on their links and passes outside clients through untouched.
func TestSharedEndpoint(t *testing.T) {
	nw := testcluster.NewNetwork()
	ep, err := nw.ListenShared("b", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	accept := func() net.Conn {
		t.Helper()
		got := make(chan net.Conn, 1)
		go func() {
			if c, err := ep.Accept(); err == nil {
				got <- c
			}
		}()
		select {
		case c := <-got:
			t.Cleanup(func() { c.Close() })
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}

	// An outside client: what it sent first is read in full on the other
	// side, though the endpoint looked at it for a preface.
	client, err := net.Dial("tcp", ep.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	hello := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	client.Write([]byte(hello))
	served := accept()
	if got, err := readWithin(served, len(hello), 2*time.Second); err != nil || string(got) != hello {
		t.Fatalf("client's first bytes: %q, %v", got, err)
	}

	// A peer, dialled with node a's dialer, is on the link a-b.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peer, err := nw.Dialer("a")(ctx, ep.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	fromPeer := accept()
	peer.Write([]byte("hi"))
	if got, err := readWithin(fromPeer, 2, 2*time.Second); err != nil || string(got) != "hi" {
		t.Fatalf("peer's bytes: %q, %v", got, err)
	}

	// Cutting the link closes the peer's connection and refuses new ones;
	// the client is not on any link.
	nw.CutBoth("a", "b")
	if _, err := readWithin(fromPeer, 1, 2*time.Second); err == nil {
		t.Fatal("the peer's connection survived the cut")
	}
	if _, err := nw.Dialer("a")(ctx, ep.Addr().String()); !errors.Is(err, testcluster.ErrLinkDown) {
		t.Fatalf("dial across a cut link: %v", err)
	}
	served.Write([]byte("ok"))
	if got, err := readWithin(client, 2, 2*time.Second); err != nil || string(got) != "ok" {
		t.Fatalf("client after the cut: %q, %v", got, err)
	}
	nw.Heal()

	// A held node's dial waits, but no longer than its context.
	nw.Hold("a")
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := nw.Dialer("a")(short, ep.Addr().String()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial from a held node: %v", err)
	}
	nw.Release("a")
}

// TestIsolatedFollowerForwardsNothing: node-to-node gRPC crosses the fault
// network, so a follower cut off from the others acknowledges no write and
// serves no linearizable read, even in the moment before it notices it
// lost its leader (it used to forward them over a gRPC connection no cut
// touched); test clients still reach it.
func TestIsolatedFollowerForwardsNothing(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	l := c.Leader()
	f := (l + 1) % 3
	// Forwarding and read index work, and the follower holds a pooled
	// connection to the leader.
	key := createKey(t, c.KMS(f), "via follower")
	must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(f).Encrypt(apiCtx(t), &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))

	c.Isolate(f)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.KMS(f).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "while isolated"}); err == nil {
		t.Fatal("an isolated follower acknowledged CreateKey")
	}
	if _, err := c.KMS(f).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err == nil {
		t.Fatal("an isolated follower served Encrypt")
	}
	must[*clusterv1.StatusResponse](t, "Status of the isolated node")(c.ClusterAPI(f).Status(apiCtx(t), &clusterv1.StatusRequest{}))

	c.Heal()
	createKey(t, c.KMS(f), "after the heal")
	c.WaitConverged(t)
	for i := range 3 {
		if n := c.FSM(i).KeyCount(); n != 2 {
			t.Fatalf("node %d holds %d keys, want 2 (nothing from the isolated follower)", i, n)
		}
	}
}
