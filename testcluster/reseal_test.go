package testcluster_test

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// sealedCounts is node i's SealedByRootKey from cluster status.
func sealedCounts(t *testing.T, c *testcluster.Cluster, i int) (map[string]uint64, *clusterv1.StatusResponse) {
	t.Helper()
	st := must[*clusterv1.StatusResponse](t, "Status")(c.ClusterAPI(i).Status(apiCtx(t), &clusterv1.StatusRequest{}))
	n := map[string]uint64{}
	for _, u := range st.SealedByRootKey {
		n[u.RootKeyId] = u.SealedCount
	}
	return n, st
}

// TestRotateRootKey: a cluster on root key k1 is restarted with the ring
// [k1, k2] and asked to rotate its root key; the leader is killed while it
// re-seals, and the next one finishes the work. Once cluster status shows
// nothing under k1 and the cluster records k2, every node is restarted with
// k2 alone: each serves, every ciphertext from before decrypts on every
// node, and the state digests agree.
func TestRotateRootKey(t *testing.T) {
	k2 := otherRootKey(t)
	var c *testcluster.Cluster
	var mode atomic.Int32 // 0: k1, 1: [k1, k2], 2: k2 alone
	c = testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithRootKeys(func(i int) *keycrypto.RootKey {
		switch mode.Load() {
		case 1:
			ring, err := keycrypto.NewRootKeyRing(c.Root(), k2)
			if err != nil {
				panic(err)
			}
			return ring
		case 2:
			return k2
		}
		return nil
	})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	k1 := c.Root().ID()

	type sealedText struct {
		blob  []byte
		plain []byte
	}
	var texts []sealedText
	encrypt := func(key string, i int) {
		plain := []byte("secret " + key + string(rune('a'+i)))
		r := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(i%c.N()).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: plain}))
		texts = append(texts, sealedText{r.CiphertextBlob, plain})
	}
	for i := range 12 {
		key := createKey(t, c.KMS(0), "reseal")
		encrypt(key, i)
		if i%3 == 0 {
			must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(1).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
			encrypt(key, i+1)
		}
	}
	c.WaitConverged(t)
	before, _ := sealedCounts(t, c, 0)
	if before[k1] < 16 || len(before) != 1 {
		t.Fatalf("sealed blobs by root key %v, want 16 or more under k1 %s alone", before, k1)
	}

	mode.Store(1)
	for i := range c.N() {
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
	}
	lead := c.WaitForLeader(t)
	r := must[*clusterv1.RotateRootKeyResponse](t, "RotateRootKey")(c.ClusterAPI(lead).RotateRootKey(ctx, &clusterv1.RotateRootKeyRequest{}))
	if r.TargetRootKeyId != k2.ID() {
		t.Fatalf("rotation target %s, want k2 %s", r.TargetRootKeyId, k2.ID())
	}
	// The request is in the state: a new leader resumes the re-sealing.
	c.Kill(lead)
	c.Restart(lead)
	c.WaitServing(t)

	waitFor(t, "nothing sealed under k1 and k2 recorded as the cluster's root key", func() bool {
		for i := range c.N() {
			n, st := sealedCounts(t, c, i)
			if n[k1] != 0 || n[k2.ID()] != before[k1] || st.ClusterRootKeyId != k2.ID() || st.RotatingToRootKeyId != "" {
				return false
			}
		}
		return true
	})

	mode.Store(2)
	for i := range c.N() {
		c.Kill(i)
	}
	for i := range c.N() {
		c.Restart(i)
	}
	c.WaitServing(t)
	c.WaitConverged(t)
	for i := range c.N() {
		if err := c.Server(i).API().RootKeyMismatch(); err != nil {
			t.Fatalf("node %d with k2 alone: %v", i, err)
		}
		for _, s := range texts {
			got := must[*kmsv1.DecryptResponse](t, "Decrypt")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: s.blob}))
			if !bytes.Equal(got.Plaintext, s.plain) {
				t.Fatalf("node %d decrypted %q, want %q", i, got.Plaintext, s.plain)
			}
		}
	}
	d0 := c.FSM(0).Digest()
	for i := 1; i < c.N(); i++ {
		if d := c.FSM(i).Digest(); d != d0 {
			t.Fatalf("node %d state digest %x, node 0 %x", i, d, d0)
		}
	}
	// A new key is sealed under k2 and works.
	key := createKey(t, c.KMS(1), "after")
	encrypt(key, 2)
}
