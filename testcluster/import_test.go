package testcluster_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func randomMaterial(t *testing.T) []byte {
	t.Helper()
	m := make([]byte, 32)
	if _, err := rand.Read(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// wrapFor fetches import parameters through node i and wraps material with
// the returned public key (RSAES_OAEP_SHA_256), as a user would.
func wrapFor(t *testing.T, c *testcluster.Cluster, i int, keyID string, material []byte) (token, wrapped []byte) {
	t.Helper()
	p := must[*kmsv1.GetParametersForImportResponse](t, "GetParametersForImport")(c.KMS(i).GetParametersForImport(apiCtx(t),
		&kmsv1.GetParametersForImportRequest{KeyId: keyID, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"}))
	if p.ParametersValidTo.AsTime().Sub(time.Now()) < 23*time.Hour {
		t.Fatalf("import parameters valid only until %v", p.ParametersValidTo.AsTime())
	}
	w, err := keycrypto.WrapKeyMaterial(rand.Reader, p.PublicKey, "RSAES_OAEP_SHA_256", material)
	if err != nil {
		t.Fatal(err)
	}
	return p.ImportToken, w
}

// TestAPIImportKeyMaterial: bring your own key through followers, use it on
// every node, delete and re-import it, rotate it with new material, and
// refuse every wrong import without changing state.
func TestAPIImportKeyMaterial(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.Leader()
	f1, f2 := (l+1)%3, (l+2)%3

	created := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL")(c.KMS(f1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"}))
	key := created.KeyMetadata.KeyId
	if created.KeyMetadata.KeyState != "PendingImport" || created.KeyMetadata.Origin != "EXTERNAL" || created.KeyMetadata.CurrentKeyVersion != 0 {
		t.Fatalf("external key = %v", created.KeyMetadata)
	}
	_, err := c.KMS(f2).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
	wantErr(t, "encrypt before import", err, codes.FailedPrecondition, "KMSInvalidStateException")

	material := randomMaterial(t)
	token, wrapped := wrapFor(t, c, f1, key, material)
	imp := must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial")(c.KMS(f2).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: key, ImportToken: token, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}))
	if imp.KeyVersion != 1 {
		t.Fatalf("imported as version %d", imp.KeyVersion)
	}
	enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(f1).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("byok")}))
	dec := must[*kmsv1.DecryptResponse](t, "Decrypt")(c.KMS(f2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
	if string(dec.Plaintext) != "byok" {
		t.Fatalf("decrypted %q", dec.Plaintext)
	}
	// The imported material really is the user's: a blob made with it
	// locally opens through the service.
	v, _ := c.FSM(f2).Key(key)
	if got, err := c.Root().Open(key, 1, v.Versions[0].Sealed); err != nil || !bytes.Equal(got, material) {
		t.Fatalf("stored material is not the imported material (%v)", err)
	}

	// Refusals leave the state unchanged.
	other := createKey(t, c.KMS(l), "not external")
	otherExt := must[*kmsv1.CreateKeyResponse](t, "CreateKey EXTERNAL 2")(c.KMS(l).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
	otherToken, _ := wrapFor(t, c, l, otherExt, randomMaterial(t))
	_, err = c.KMS(f1).GetParametersForImport(ctx, &kmsv1.GetParametersForImportRequest{KeyId: other, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"})
	wantErr(t, "import parameters for an AWS_KMS key", err, codes.FailedPrecondition, "UnsupportedOperationException")
	token2, wrongWrapped := wrapFor(t, c, f1, key, randomMaterial(t))
	// The refusals must leave both keys as they were. (The whole-state
	// digest is no measure here: a node's start-up registration retried
	// across an election may still apply meanwhile.)
	keyHeads := func() [2][32]byte {
		a, _ := c.FSM(l).Key(key)
		b, _ := c.FSM(l).Key(otherExt)
		return [2][32]byte{a.HistoryHead(), b.HistoryHead()}
	}
	afterParams := keyHeads()
	_, err = c.KMS(f1).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: token2,
		EncryptedKeyMaterial: wrongWrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
	wantErr(t, "different material as EXISTING_KEY_MATERIAL", err, codes.InvalidArgument, "IncorrectKeyMaterialException")
	_, err = c.KMS(f2).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: otherToken,
		EncryptedKeyMaterial: wrongWrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
	wantErr(t, "token of another key", err, codes.InvalidArgument, "InvalidImportTokenException")
	_, err = c.KMS(f2).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: token,
		EncryptedKeyMaterial: wrongWrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
	wantErr(t, "superseded token", err, codes.InvalidArgument, "InvalidImportTokenException")
	_, err = c.KMS(l).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: token2,
		EncryptedKeyMaterial: []byte("garbage garbage garbage"), ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
	wantErr(t, "garbage wrapped bytes", err, codes.InvalidArgument, "InvalidCiphertextException")
	_, err = c.KMS(l).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: token2,
		EncryptedKeyMaterial: wrongWrapped, ExpirationModel: "KEY_MATERIAL_EXPIRES"})
	wantErr(t, "expiring without ValidTo", err, codes.InvalidArgument, "ValidationException")
	c.WaitConverged(t)
	if keyHeads() != afterParams {
		t.Fatal("a refused import changed the state")
	}

	// Delete the material, re-import the same material: old data decrypts.
	must[*kmsv1.DeleteImportedKeyMaterialResponse](t, "DeleteImportedKeyMaterial")(c.KMS(f1).DeleteImportedKeyMaterial(ctx, &kmsv1.DeleteImportedKeyMaterialRequest{KeyId: key}))
	_, err = c.KMS(f2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
	wantErr(t, "decrypt after material deletion", err, codes.FailedPrecondition, "KMSInvalidStateException")
	token3, rewrapped := wrapFor(t, c, f2, key, material)
	must[*kmsv1.ImportKeyMaterialResponse](t, "re-import")(c.KMS(f1).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: key, ImportToken: token3, EncryptedKeyMaterial: rewrapped,
		ExpirationModel: "KEY_MATERIAL_EXPIRES", ValidTo: timestamppb.New(time.Now().Add(48 * time.Hour))}))
	must[*kmsv1.DecryptResponse](t, "Decrypt after re-import")(c.KMS(l).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
	desc := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(c.KMS(f2).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key}))
	if desc.KeyMetadata.ExpirationModel != "KEY_MATERIAL_EXPIRES" || desc.KeyMetadata.ValidTo == nil {
		t.Fatalf("after re-import with expiry: %v", desc.KeyMetadata)
	}

	// New material is staged (PENDING_ROTATION), and an on-demand rotation
	// through another node makes it version 2 (ON_DEMAND); both decrypt.
	_, err = c.KMS(f1).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key})
	wantErr(t, "on-demand rotation with no staged material", err, codes.FailedPrecondition, "KMSInvalidStateException")
	newMaterial := randomMaterial(t)
	token4, wrappedNew := wrapFor(t, c, f1, key, newMaterial)
	rot := must[*kmsv1.ImportKeyMaterialResponse](t, "import NEW_KEY_MATERIAL")(c.KMS(f2).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
		KeyId: key, ImportToken: token4, EncryptedKeyMaterial: wrappedNew, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE",
		ImportType: "NEW_KEY_MATERIAL"}))
	if rot.KeyVersion != 2 || len(rot.KeyMaterialId) != 64 || rot.KeyMaterialId == desc.KeyMetadata.CurrentKeyMaterialId {
		t.Fatalf("new material staged as version %d, ID %q (current %q)", rot.KeyVersion, rot.KeyMaterialId, desc.KeyMetadata.CurrentKeyMaterialId)
	}
	staged := must[*kmsv1.EncryptResponse](t, "Encrypt while staged")(c.KMS(l).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("v1")}))
	if v := must[*kmsv1.DescribeKeyResponse](t, "DescribeKey staged")(c.KMS(f1).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key})); v.KeyMetadata.CurrentKeyVersion != 1 {
		t.Fatalf("staging moved the current version to %d", v.KeyMetadata.CurrentKeyVersion)
	}
	rotated := must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(f1).RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
	if rotated.KeyVersion != 2 {
		t.Fatalf("rotation made version %d", rotated.KeyVersion)
	}
	enc2 := must[*kmsv1.EncryptResponse](t, "Encrypt v2")(c.KMS(l).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("v2")}))
	for i := range 3 {
		must[*kmsv1.DecryptResponse](t, "Decrypt v1")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
		must[*kmsv1.DecryptResponse](t, "Decrypt v1 (staged)")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: staged.CiphertextBlob}))
		must[*kmsv1.DecryptResponse](t, "Decrypt v2")(c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc2.CiphertextBlob}))
	}
	rots := must[*kmsv1.ListKeyRotationsResponse](t, "ListKeyRotations")(c.KMS(f1).ListKeyRotations(ctx, &kmsv1.ListKeyRotationsRequest{KeyId: key}))
	if len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != "ON_DEMAND" || rots.Rotations[0].KeyVersion != 2 ||
		rots.Rotations[0].KeyMaterialId != rot.KeyMaterialId || rots.Rotations[0].KeyMaterialState != "CURRENT" {
		t.Fatalf("rotations = %v", rots.Rotations)
	}
	_, err = c.KMS(f1).EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key})
	wantErr(t, "automatic rotation of an imported key", err, codes.FailedPrecondition, "UnsupportedOperationException")

	// Neither imported material nor wrapping private keys are on disk.
	c.WaitConverged(t)
	for i := range 3 {
		must[*struct{}](t, "snapshot")(nil, func() error { _, err := c.ClusterAPI(i).Snapshot(ctx, nil); return err }())
	}
	k, _ := c.FSM(0).Key(key)
	privDER, err := c.Root().OpenPrivateKey(key, k.Import.TokenID, k.Import.SealedPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{material, newMaterial, privDER}
	for i := range 3 {
		filepath.Walk(c.DataDir(i), func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			data, _ := os.ReadFile(path)
			for _, s := range secrets {
				if bytes.Contains(data, s) {
					t.Errorf("%s holds imported material or a wrapping private key", path)
				}
			}
			return nil
		})
	}
}
