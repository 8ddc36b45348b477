package testcluster_test

import (
	"context"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLeaseDriftBeyondBound documents what read leases assume: that every
// node's clock runs within a factor 1±ε of real time (LeaseMaxDrift). A
// follower holding a lease is isolated; the leader stops counting it
// L(1+ε) after its last renewal and then acknowledges a DisableKey, which
// the follower never receives. Clients still reach the follower (the cut is
// between nodes), and ask it to Encrypt under the key.
//
//   - Its clock just inside the bound (×0.991, ε = 0.01): it trusted its
//     lease for L(1-ε) on that clock, under L in real time, so the lease
//     has ended before the leader stopped counting it; it falls back to the
//     read index, cannot reach the leader, and the Encrypt fails. Nothing
//     stale is served.
//   - Its clock far outside the bound (×0.2): its lease lasts about five
//     times longer in real time than the leader counts it, and it serves
//     the Encrypt under it with the key the cluster has acknowledged as
//     disabled — a stale read, which this test requires to happen: the
//     drift bound is an assumption of the design, not something it checks.
func TestLeaseDriftBeyondBound(t *testing.T) {
	const lease = 500 * time.Millisecond
	const bound = 0.01
	for _, tc := range []struct {
		name  string
		rate  float64
		stale bool
	}{
		{"within the bound", 1 - bound + 0.001, false},
		{"beyond the bound", 0.2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const slow = 2 // the follower whose clock runs slow
			c := testcluster.New(t, 3, testcluster.WithAPI(), testcluster.WithNodeConfig(func(i int, cfg *raftnode.Config) {
				cfg.LeaseDuration, cfg.LeaseMaxDrift = lease, bound
				if i == slow {
					cfg.LeaseClock = testcluster.RateClock(tc.rate)
				}
			}))
			c.WaitServing(t)
			ctx := apiCtx(t)
			if c.Leader() == slow {
				if err := c.TransferLeadership(0); err != nil {
					t.Fatalf("moving leadership off node%d: %v", slow, err)
				}
			}
			l := c.WaitForLeader(t)
			if l == slow {
				t.Fatalf("node%d still leads", slow)
			}
			other := 3 - l - slow
			key := createKey(t, c.KMS(l), "drift")
			waitLeases(t, c, key)
			c.WaitConverged(t)
			if ok, err := c.Node(slow).LeaseRead(ctx); !ok || err != nil {
				t.Fatalf("node%d holds no read lease before the cut (%v)", slow, err)
			}

			c.Isolate(slow)
			cut := time.Now()
			must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(l).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
			acked := time.Since(cut)
			if n := c.Node(l).LeaseHolders(); n > 1 {
				t.Fatalf("the leader acknowledged DisableKey while counting %d lease holders (node%d is cut off)", n, slow)
			}
			if _, err := c.KMS(other).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("Encrypt on node%d after the acknowledged DisableKey: %v (want DisabledException)", other, err)
			}

			lease0, _, _, _ := c.Server(slow).API().ReadCounts()
			ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.KMS(slow).Encrypt(ectx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
			cancel()
			lease1, _, _, _ := c.Server(slow).API().ReadCounts()
			asked := time.Since(cut)
			t.Logf("node%d (lease clock ×%.3f, bound %v): DisableKey acknowledged %v after the cut; Encrypt on node%d %v after it: %v (%d served under its lease)",
				slow, tc.rate, bound, acked.Round(time.Millisecond), slow, asked.Round(time.Millisecond), err, lease1-lease0)
			switch {
			case tc.stale && err != nil:
				t.Fatalf("beyond the drift bound the isolated follower did not serve the stale Encrypt (%v): the test shows nothing", err)
			case tc.stale && lease1 == lease0:
				t.Fatalf("the stale Encrypt was not served under the lease")
			case tc.stale:
				t.Logf("as documented: beyond the drift bound, node%d served an Encrypt under a key the cluster had acknowledged as disabled", slow)
			case err == nil:
				t.Fatalf("within the drift bound the isolated follower served Encrypt under a key acknowledged as disabled: a stale read")
			case lease1 != lease0:
				t.Fatalf("within the drift bound node%d still counted a read under its lease after the leader stopped counting it", slow)
			}
		})
	}
}
