package testcluster_test

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// sealedUnder counts the sealed versions in f by the root-key ID that
// sealed them.
func sealedUnder(f *fsm.FSM) map[string]int {
	n := map[string]int{}
	f.ForEachKey(func(k *fsm.Key) bool {
		for _, v := range k.Versions {
			if len(v.Sealed) > 0 {
				id, _ := keycrypto.SealedRootKeyID(v.Sealed)
				n[id]++
			}
		}
		return true
	})
	return n
}

// TestRootKeyRingAddsKey: a cluster started with root key k1 is restarted
// node by node with the ring [k1, k2]. New versions are sealed under k2,
// every ciphertext from before and after decrypts on every node, and a
// node started with k2 alone (without the key the cluster's root-key check
// records) refuses to serve.
func TestRootKeyRingAddsKey(t *testing.T) {
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
	key := createKey(t, c.KMS(0), "ring")
	plain := []byte("sealed before the ring")
	before := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(0).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: plain}))

	mode.Store(1)
	for i := range c.N() {
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
	}
	must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(1).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
	after := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: plain}))
	c.WaitConverged(t)
	for i := range c.N() {
		for _, blob := range [][]byte{before.CiphertextBlob, after.CiphertextBlob} {
			got := must[*kmsv1.DecryptResponse](t, "Decrypt")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob}))
			if !bytes.Equal(got.Plaintext, plain) {
				t.Fatalf("node %d decrypted %q", i, got.Plaintext)
			}
		}
	}
	counts := sealedUnder(c.FSM(0))
	if counts[c.Root().ID()] != 1 || counts[k2.ID()] != 1 || len(counts) != 2 {
		t.Fatalf("sealed versions by root key %v, want one under k1 %s and one under k2 %s", counts, c.Root().ID(), k2.ID())
	}

	mode.Store(2)
	c.Kill(2)
	c.Restart(2)
	err := waitRefused(t, c, 2)
	if !strings.Contains(err.Error(), k2.ID()) || !strings.Contains(err.Error(), c.Root().ID()) {
		t.Fatalf("refusal %q does not name both root keys", err)
	}
}
