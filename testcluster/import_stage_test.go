package testcluster_test

import (
	"testing"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// TestAPIStagedImportAcrossNodes: new material staged through one node is
// PENDING_ROTATION on every node and does not encrypt; staging again through
// another node replaces it; RotateKeyOnDemand through a third makes the last
// staged material current everywhere, and old and new ciphertexts decrypt on
// every node.
func TestAPIStagedImportAcrossNodes(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.Leader()
	f1, f2 := (l+1)%3, (l+2)%3

	key := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(c.KMS(f1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
	importAs := func(node int, typ string) *kmsv1.ImportKeyMaterialResponse {
		t.Helper()
		token, wrapped := wrapFor(t, c, node, key, randomMaterial(t))
		return must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial "+typ)(c.KMS(node).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
			KeyId: key, ImportToken: token, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", ImportType: typ}))
	}
	first := importAs(f1, "EXISTING_KEY_MATERIAL")
	old := must[*kmsv1.EncryptResponse](t, "Encrypt v1")(c.KMS(f2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("old")}))

	// materials lists every material of the key through node i.
	materials := func(i int) map[string]string {
		t.Helper()
		r := must[*kmsv1.ListKeyRotationsResponse](t, "ListKeyRotations ALL_KEY_MATERIAL")(c.KMS(i).ListKeyRotations(ctx,
			&kmsv1.ListKeyRotationsRequest{KeyId: key, IncludeKeyMaterial: "ALL_KEY_MATERIAL"}))
		m := map[string]string{}
		for _, e := range r.Rotations {
			m[e.KeyMaterialId] = e.KeyMaterialState
		}
		return m
	}
	staged := importAs(f2, "NEW_KEY_MATERIAL")
	for i := range 3 {
		m := materials(i)
		if len(m) != 2 || m[first.KeyMaterialId] != "CURRENT" || m[staged.KeyMaterialId] != "PENDING_ROTATION" {
			t.Fatalf("node %d materials after staging: %v", i, m)
		}
	}
	restaged := importAs(l, "NEW_KEY_MATERIAL")
	for i := range 3 {
		m := materials(i)
		if len(m) != 2 || m[restaged.KeyMaterialId] != "PENDING_ROTATION" {
			t.Fatalf("node %d materials after staging again: %v", i, m)
		}
		d := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(i).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}))
		if d.KeyMetadata.CurrentKeyMaterialId != first.KeyMaterialId || d.KeyMetadata.CurrentKeyVersion != 1 {
			t.Fatalf("node %d: staged material became current: %v", i, d.KeyMetadata)
		}
	}

	must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(f1).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
	fresh := must[*kmsv1.EncryptResponse](t, "Encrypt v2")(c.KMS(f2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("new")}))
	for i := range 3 {
		d := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(i).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}))
		if d.KeyMetadata.CurrentKeyMaterialId != restaged.KeyMaterialId || d.KeyMetadata.CurrentKeyVersion != 2 {
			t.Fatalf("node %d after rotation: %v", i, d.KeyMetadata)
		}
		m := materials(i)
		if len(m) != 2 || m[first.KeyMaterialId] != "NON_CURRENT" || m[restaged.KeyMaterialId] != "CURRENT" {
			t.Fatalf("node %d materials after rotation: %v", i, m)
		}
		for want, blob := range map[string][]byte{"old": old.CiphertextBlob, "new": fresh.CiphertextBlob} {
			got := must[*kmsv1.DecryptResponse](t, "Decrypt "+want)(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob}))
			if string(got.Plaintext) != want {
				t.Fatalf("node %d decrypted %q, want %q", i, got.Plaintext, want)
			}
		}
	}
	c.WaitConverged(t)
}
