package chaos

import (
	"context"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLeaseWriteRefusalThenLeaseRead: a write refused by the leader before
// it proposes anything (here: AccessDenied under a key policy the leader
// has applied but not yet made visible to every lease holder) answers at
// once, without waiting for the visible index, while a read on a lease
// holder that has not appended the policy change yet still runs under the
// old policy. A client that was refused and then reads elsewhere sees the
// policy change undone: not linearizable.
//
// Setup: the link from the leader to follower g is slow (400 ms), so g
// keeps its lease (renewals go out at once; grants come back late but
// within the lease) while the leader's entries reach it late. The owner
// revokes app's access (PutKeyPolicy, not acknowledged until g has the
// entry); once the leader has applied it, app's EnableKey on the leader is
// refused, and app's Encrypt on g right after is served under the old
// policy.
//
// Found while testing leases: rpc's write path judged the write by local
// state and answered the refusal unheld. A write answered on the leader is
// now held like a read until what it saw is visible (rpc/forward.go), and
// this test must pass.
func TestLeaseWriteRefusalThenLeaseRead(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := c.WaitForLeader(t)
	g := (l + 1) % 3
	owner := c.KMSAs(l, "owner")
	created, err := owner.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.KeyMetadata.KeyId
	grant := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"},
		{"Effect":"Allow","Principal":{"Identity":"app"},"Action":["kms:Encrypt","kms:EnableKey"]}]}`
	revoke := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"}]}`
	if _, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: grant}); err != nil {
		t.Fatal(err)
	}
	appL, appG := c.KMSAs(l, "app"), c.KMSAs(g, "app")
	// g serves app's reads under its lease.
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		before, _, _, _ := c.Server(g).API().ReadCounts()
		if _, err := appG.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err != nil {
			t.Fatalf("app Encrypt on node%d under the grant: %v", g, err)
		}
		if after, _, _, _ := c.Server(g).API().ReadCounts(); after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node%d never served a read under a lease", g)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	c.WaitConverged(t)

	c.Network().Delay(c.ID(l), c.ID(g), 400*time.Millisecond, 0)
	defer c.Network().ClearFaults()
	put := make(chan error, 1)
	go func() {
		_, err := owner.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: revoke})
		put <- err
	}()
	for {
		if k, ok := c.FSM(l).Key(key); ok && k.Policy == revoke {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never applied the revocation")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	_, werr := appL.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key})
	_, rerr := appG.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
	acked := false
	select {
	case err := <-put:
		acked = true
		if err != nil {
			t.Fatalf("PutKeyPolicy: %v", err)
		}
	default:
	}
	t.Logf("revocation acknowledged before the Encrypt returned: %v; app EnableKey on the leader: %v; app Encrypt on node%d after it: %v", acked, werr, g, rerr)
	if status.Code(werr) != codes.PermissionDenied {
		t.Skipf("the leader did not refuse app's write under the new policy (%v): nothing shown", werr)
	}
	if rerr == nil {
		t.Fatalf("app was refused under the revocation by the leader, then served by node%d under the old policy", g)
	}
}
