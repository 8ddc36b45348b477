package testcluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// waitLeases waits until every node serves reads under a lease.
func waitLeases(t *testing.T, c *testcluster.Cluster, key string) {
	t.Helper()
	ctx := apiCtx(t)
	deadline := time.Now().Add(20 * time.Second)
	for i := range c.N() {
		for {
			before, _, _, _ := c.Server(i).API().ReadCounts()
			if _, err := c.KMS(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err == nil {
				if after, _, _, _ := c.Server(i).API().ReadCounts(); after > before {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never served a read under a lease", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestLeaseReadsNeedNoRoundTrip: with leases, Encrypts on every node are
// served under the lease: no read-index round with the leader, no
// VerifyLeader round on it.
func TestLeaseReadsNeedNoRoundTrip(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.Leader()
	key := createKey(t, c.KMS(l), "lease")
	waitLeases(t, c, key)
	rounds := c.Node(l).VerifyRounds()
	const n = 200
	var lease0, idx0 [3]uint64
	for i := range 3 {
		lease0[i], idx0[i], _, _ = c.Server(i).API().ReadCounts()
	}
	for r := range n {
		i := r % 3
		if _, err := c.KMS(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err != nil {
			t.Fatalf("Encrypt on node %d: %v", i, err)
		}
	}
	var leased, indexed uint64
	for i := range 3 {
		lz, ix, _, _ := c.Server(i).API().ReadCounts()
		leased += lz - lease0[i]
		indexed += ix - idx0[i]
	}
	extra := c.Node(l).VerifyRounds() - rounds
	t.Logf("%d Encrypts: %d under a lease, %d after a read-index round; %d VerifyLeader rounds on the leader meanwhile", n, leased, indexed, extra)
	// A lease can lapse on a loaded machine and a read then takes the read
	// index: allow a few, not one per read.
	if leased < n*9/10 {
		t.Fatalf("only %d of %d reads were served under a lease", leased, n)
	}
	if extra > n/10 {
		t.Fatalf("%d VerifyLeader rounds for %d reads: the reads were not served under the lease", extra, n)
	}
}

// TestLeaseDisableHonouredEverywhere: an acknowledged DisableKey is honoured
// by the next Encrypt on every node, served under the lease, even when that
// node applies slowly. The same loop with stale-ok reads shows the slow node
// really lags.
func TestLeaseDisableHonouredEverywhere(t *testing.T) {
	var slow atomic.Int32
	slow.Store(-1)
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithOnApply(func(i int, _ string) {
		if int32(i) == slow.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	writer := c.Leader()
	lag := (writer + 1) % 3
	slow.Store(int32(lag))
	defer slow.Store(-1)
	key := createKey(t, c.KMS(writer), "lease-disable")
	waitLeases(t, c, key)
	stale := 0
	lease0, _, _, _ := c.Server(lag).API().ReadCounts()
	const rounds = 20
	for r := range rounds {
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(writer).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
		for i := range 3 {
			_, err := c.KMS(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
			if st, _ := status.FromError(err); err == nil || st.Code() != codes.FailedPrecondition {
				t.Fatalf("round %d: Encrypt on node %d after DisableKey: %v (want DisabledException)", r, i, err)
			}
		}
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(c.KMS(writer).EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key}))
		for i := range 3 {
			must[*kmsv1.EncryptResponse](t, "Encrypt after enable")(c.KMS(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))
		}
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(writer).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}))
		if _, err := c.KMS(lag).Encrypt(staleCtx(ctx), &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}); err == nil {
			stale++
		}
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(c.KMS(writer).EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key}))
	}
	lease1, _, _, _ := c.Server(lag).API().ReadCounts()
	t.Logf("the slow node served %d reads under its lease; stale-ok reads served the disabled key %d of %d times", lease1-lease0, stale, rounds)
	if lease1-lease0 < rounds {
		t.Fatalf("the slow node served only %d reads under its lease", lease1-lease0)
	}
	if stale == 0 {
		t.Fatalf("the slow node never lagged: the check proved nothing")
	}
}

func staleCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rpc.MDStaleOK, "true")
}

// TestLeaseAliasMovedThenTargetDisabled: an alias is moved to another key and
// that key disabled, both acknowledged; an Encrypt through the alias on a
// lease holder that applies late must see both. The holder resolves the alias
// before it has applied the move; once it has, it must look again and wait
// for the new target's own appended entries. Changes of two other keys, one
// before the move and one between the move and the disable, make the holder
// stop (150 ms each) at those points.
func TestLeaseAliasMovedThenTargetDisabled(t *testing.T) {
	var lag atomic.Int32
	lag.Store(-1)
	var stops sync.Map // key IDs whose change the lagging node applies slowly
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithOnApply(func(i int, keyID string) {
		if _, ok := stops.Load(keyID); ok && int32(i) == lag.Load() {
			time.Sleep(150 * time.Millisecond)
		}
	})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	writer := c.Leader()
	reader := (writer + 1) % 3
	lag.Store(int32(reader))
	tag := func(key string, r int) {
		must[*kmsv1.TagResourceResponse](t, "TagResource")(c.KMS(writer).TagResource(ctx, &kmsv1.TagResourceRequest{
			KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "round", TagValue: fmt.Sprint(r)}}}))
	}
	const rounds = 5
	for r := range rounds {
		first := createKey(t, c.KMS(writer), "first")
		second := createKey(t, c.KMS(writer), "second")
		before, between := createKey(t, c.KMS(writer), "before"), createKey(t, c.KMS(writer), "between")
		alias := fmt.Sprintf("alias/moved-%d", r)
		must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(c.KMS(writer).CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: alias, TargetKeyId: first}))
		waitLeases(t, c, first)
		stops.Store(before, true)
		stops.Store(between, true)
		tag(before, r)
		must[*kmsv1.UpdateAliasResponse](t, "UpdateAlias")(c.KMS(writer).UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: alias, TargetKeyId: second}))
		tag(between, r)
		must[*kmsv1.DisableKeyResponse](t, "DisableKey")(c.KMS(writer).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: second}))
		_, err := c.KMS(reader).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: alias, Plaintext: []byte("x")})
		if st, _ := status.FromError(err); err == nil || st.Code() != codes.FailedPrecondition {
			t.Fatalf("round %d: Encrypt through %s on node %d after it moved to a key since disabled: %v (want DisabledException)", r, alias, reader, err)
		}
		c.WaitConverged(t)
	}
}
