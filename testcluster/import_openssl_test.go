package testcluster_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// TestAPIImportWrappedByOpenSSL wraps key material with the openssl command
// line, exactly as the README tells users to, for both wrapping algorithm
// families, and imports it.
func TestAPIImportWrappedByOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed; the Go-wrapped import test covers the server side")
	}
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	for _, alg := range []string{"RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"} {
		t.Run(alg, func(t *testing.T) {
			key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})).KeyMetadata.KeyId
			p := must[*kmsv1.GetParametersForImportResponse](t, "GetParametersForImport")(c.KMS(2).GetParametersForImport(ctx,
				&kmsv1.GetParametersForImportRequest{KeyId: key, WrappingAlgorithm: alg, WrappingKeySpec: "RSA_3072"}))
			write := func(name string, b []byte) {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write("WrappingPublicKey.bin", p.PublicKey)
			run("openssl", "rand", "-out", "PlaintextKeyMaterial.bin", "32")
			oaep := []string{"pkeyutl", "-encrypt", "-pubin", "-inkey", "WrappingPublicKey.bin", "-keyform", "DER",
				"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"}
			if alg == "RSAES_OAEP_SHA_256" {
				run("openssl", append(oaep, "-in", "PlaintextKeyMaterial.bin", "-out", "EncryptedKeyMaterial.bin")...)
			} else {
				// An ephemeral AES key wraps the material (RFC 5649); RSA-OAEP wraps the AES key.
				run("openssl", "rand", "-out", "aes.key", "32")
				aesHex := hexFile(t, filepath.Join(dir, "aes.key"))
				run("openssl", "enc", "-id-aes256-wrap-pad", "-K", aesHex, "-iv", "A65959A6",
					"-in", "PlaintextKeyMaterial.bin", "-out", "wrapped-material.bin")
				run("openssl", append(oaep, "-in", "aes.key", "-out", "wrapped-aes.bin")...)
				a, _ := os.ReadFile(filepath.Join(dir, "wrapped-aes.bin"))
				b, _ := os.ReadFile(filepath.Join(dir, "wrapped-material.bin"))
				write("EncryptedKeyMaterial.bin", append(a, b...))
			}
			wrapped, _ := os.ReadFile(filepath.Join(dir, "EncryptedKeyMaterial.bin"))
			must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial")(c.KMS(0).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
				KeyId: key, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}))
			material, _ := os.ReadFile(filepath.Join(dir, "PlaintextKeyMaterial.bin"))
			k, _ := c.FSM(c.Leader()).Key(key)
			got, err := c.Root().Open(key, 1, k.Versions[0].Sealed)
			if err != nil || !bytes.Equal(got, material) {
				t.Fatalf("the imported material is not what openssl wrapped (%v)", err)
			}
			enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(1).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("openssl")}))
			must[*kmsv1.DecryptResponse](t, "Decrypt")(c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}))
		})
	}
	c.WaitConverged(t)
}

func hexFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
