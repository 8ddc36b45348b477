package testcluster_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// opensslDir is a scratch directory and a runner of the openssl command
// line in it; the test skips when openssl is not installed.
type opensslDir struct {
	t   *testing.T
	dir string
}

func newOpenSSL(t *testing.T) *opensslDir {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: these tests check raftkms against it (apt-get install openssl)")
	}
	return &opensslDir{t: t, dir: t.TempDir()}
}

func (o *opensslDir) write(name string, b []byte) {
	o.t.Helper()
	if err := os.WriteFile(filepath.Join(o.dir, name), b, 0o600); err != nil {
		o.t.Fatal(err)
	}
}

func (o *opensslDir) read(name string) []byte {
	o.t.Helper()
	b, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil {
		o.t.Fatal(err)
	}
	return b
}

// run runs openssl and returns its output; ok says whether it succeeded.
func (o *opensslDir) run(args ...string) (string, bool) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = o.dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func (o *opensslDir) must(args ...string) string {
	o.t.Helper()
	out, ok := o.run(args...)
	if !ok {
		o.t.Fatalf("openssl %s:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// publicPEM fetches a key's public key from a node and converts it from DER
// to PEM with openssl, as a user would.
func publicPEM(t *testing.T, o *opensslDir, kms kmsv1.KeyManagementServiceClient, key, name string) *kmsv1.GetPublicKeyResponse {
	t.Helper()
	pk := must[*kmsv1.GetPublicKeyResponse](t, "GetPublicKey")(kms.GetPublicKey(apiCtx(t), &kmsv1.GetPublicKeyRequest{KeyId: key}))
	o.write(name+".der", pk.PublicKey)
	o.must("pkey", "-pubin", "-inform", "DER", "-in", name+".der", "-out", name+".pem")
	return pk
}

// TestAsymmetricAgainstOpenSSL checks raftkms's asymmetric and HMAC keys
// against openssl: openssl verifies raftkms's signatures with the public key
// from GetPublicKey (and refuses them for another message), openssl's
// RSA-OAEP ciphertexts decrypt through raftkms, an HMAC key with imported
// material gives openssl's HMAC, and data key pairs' halves match. Keys are
// made, used and verified on different nodes.
func TestAsymmetricAgainstOpenSSL(t *testing.T) {
	o := newOpenSSL(t)
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	msg := []byte("raftkms signs this release\n")
	o.write("msg.bin", msg)
	o.write("other.bin", []byte("raftkms never signed this\n"))

	t.Run("signatures", func(t *testing.T) {
		for _, tc := range []struct {
			spec, alg string
			opts      []string // openssl dgst options
		}{
			{"RSA_2048", "RSASSA_PSS_SHA_256", []string{"-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"}},
			{"RSA_3072", "RSASSA_PSS_SHA_512", []string{"-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"}},
			{"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256", []string{"-sha256"}},
			{"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384", []string{"-sha384"}},
			{"ECC_NIST_P256", "ECDSA_SHA_256", []string{"-sha256"}},
			{"ECC_NIST_P384", "ECDSA_SHA_384", []string{"-sha384"}},
			{"ECC_NIST_P521", "ECDSA_SHA_512", []string{"-sha512"}},
		} {
			ctx := apiCtx(t) // each key its own deadline: RSA key generation is slow on a loaded machine
			key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{
				KeySpec: tc.spec, KeyUsage: "SIGN_VERIFY"})).KeyMetadata.KeyId
			sig := must[*kmsv1.SignResponse](t, "Sign "+tc.alg)(c.KMS(2).Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: msg,
				SigningAlgorithm: tc.alg})).Signature
			pk := publicPEM(t, o, c.KMS(0), key, "pub")
			if pk.KeySpec != tc.spec || pk.KeyUsage != "SIGN_VERIFY" {
				t.Fatalf("GetPublicKey %s: %s %s", tc.spec, pk.KeySpec, pk.KeyUsage)
			}
			o.write("sig.bin", sig)
			verify := append(append([]string{"dgst"}, tc.opts...), "-verify", "pub.pem", "-signature", "sig.bin")
			if out := o.must(append(verify, "msg.bin")...); !strings.Contains(out, "Verified OK") {
				t.Errorf("%s %s: openssl says %q", tc.spec, tc.alg, out)
			}
			if out, ok := o.run(append(verify, "other.bin")...); ok {
				t.Errorf("%s %s: openssl verified the signature for another message: %q", tc.spec, tc.alg, out)
			}
			// And raftkms verifies it on a third node.
			must[*kmsv1.VerifyResponse](t, "Verify")(c.KMS(0).Verify(ctx, &kmsv1.VerifyRequest{KeyId: key, Message: msg,
				Signature: sig, SigningAlgorithm: tc.alg}))
		}
	})

	t.Run("RSA-OAEP", func(t *testing.T) {
		ctx := apiCtx(t)
		key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{
			KeySpec: "RSA_2048", KeyUsage: "ENCRYPT_DECRYPT"})).KeyMetadata.KeyId
		publicPEM(t, o, c.KMS(1), key, "enc")
		o.write("secret.txt", []byte("the vault combination is 12-34-56"))
		// In this order: secret.enc holds the SHA-1 ciphertext afterwards.
		for _, am := range [][2]string{{"RSAES_OAEP_SHA_256", "sha256"}, {"RSAES_OAEP_SHA_1", "sha1"}} {
			alg, md := am[0], am[1]
			o.must("pkeyutl", "-encrypt", "-pubin", "-inkey", "enc.pem", "-pkeyopt", "rsa_padding_mode:oaep",
				"-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md, "-in", "secret.txt", "-out", "secret.enc")
			dec := must[*kmsv1.DecryptResponse](t, "Decrypt "+alg)(c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: key,
				CiphertextBlob: o.read("secret.enc"), EncryptionAlgorithm: alg}))
			if !bytes.Equal(dec.Plaintext, o.read("secret.txt")) || dec.EncryptionAlgorithm != alg {
				t.Errorf("%s: decrypted %q", alg, dec.Plaintext)
			}
		}
		// Made with SHA-1, it does not decrypt as SHA-256.
		_, err := c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: key, CiphertextBlob: o.read("secret.enc"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		if err == nil {
			t.Error("a SHA-1 OAEP ciphertext decrypted as SHA-256")
		}
	})

	t.Run("HMAC with imported material", func(t *testing.T) {
		ctx := apiCtx(t)
		for _, tc := range []struct {
			spec, alg, md string
			n             int
		}{{"HMAC_256", "HMAC_SHA_256", "sha256", 32}, {"HMAC_512", "HMAC_SHA_512", "sha512", 100}} {
			key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{
				KeySpec: tc.spec, KeyUsage: "GENERATE_VERIFY_MAC", Origin: "EXTERNAL"})).KeyMetadata.KeyId
			p := must[*kmsv1.GetParametersForImportResponse](t, "GetParametersForImport")(c.KMS(2).GetParametersForImport(ctx,
				&kmsv1.GetParametersForImportRequest{KeyId: key, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"}))
			o.write("wrap.der", p.PublicKey)
			o.must("rand", "-out", "hmac.key", strconv.Itoa(tc.n))
			o.must("pkeyutl", "-encrypt", "-pubin", "-inkey", "wrap.der", "-keyform", "DER", "-pkeyopt", "rsa_padding_mode:oaep",
				"-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256", "-in", "hmac.key", "-out", "hmac.wrapped")
			must[*kmsv1.ImportKeyMaterialResponse](t, "ImportKeyMaterial")(c.KMS(0).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{
				KeyId: key, ImportToken: p.ImportToken, EncryptedKeyMaterial: o.read("hmac.wrapped"), ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}))
			mac := must[*kmsv1.GenerateMacResponse](t, "GenerateMac")(c.KMS(2).GenerateMac(ctx, &kmsv1.GenerateMacRequest{
				KeyId: key, Message: msg, MacAlgorithm: tc.alg})).Mac
			out := o.must("dgst", "-"+tc.md, "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(o.read("hmac.key")), "msg.bin")
			fields := strings.Fields(out)
			if len(fields) == 0 || fields[len(fields)-1] != hex.EncodeToString(mac) {
				t.Errorf("%s: raftkms MAC %x, openssl says %q", tc.spec, mac, out)
			}
			must[*kmsv1.VerifyMacResponse](t, "VerifyMac")(c.KMS(1).VerifyMac(ctx, &kmsv1.VerifyMacRequest{
				KeyId: key, Message: msg, MacAlgorithm: tc.alg, Mac: mac}))
		}
		// Material outside HMAC_256's 32..64 bytes is refused.
		key := must[*kmsv1.CreateKeyResponse](t, "CreateKey")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{
			KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC", Origin: "EXTERNAL"})).KeyMetadata.KeyId
		p := must[*kmsv1.GetParametersForImportResponse](t, "GetParametersForImport")(c.KMS(2).GetParametersForImport(ctx,
			&kmsv1.GetParametersForImportRequest{KeyId: key, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"}))
		short, err := keycrypto.WrapKeyMaterial(rand.Reader, p.PublicKey, "RSAES_OAEP_SHA_256", make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.KMS(0).ImportKeyMaterial(ctx, &kmsv1.ImportKeyMaterialRequest{KeyId: key, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: short, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
		if err == nil {
			t.Error("16 bytes of HMAC_256 material imported")
		}
	})

	t.Run("data key pairs", func(t *testing.T) {
		ctx := apiCtx(t)
		sym := createKey(t, c.KMS(0), "wraps data key pairs")
		for _, spec := range []string{"RSA_2048", "ECC_NIST_P256"} {
			pair := must[*kmsv1.GenerateDataKeyPairResponse](t, "GenerateDataKeyPair")(c.KMS(1).GenerateDataKeyPair(ctx,
				&kmsv1.GenerateDataKeyPairRequest{KeyId: sym, KeyPairSpec: spec, EncryptionContext: map[string]string{"use": "tls"}}))
			priv := must[*kmsv1.DecryptResponse](t, "Decrypt")(c.KMS(2).Decrypt(ctx, &kmsv1.DecryptRequest{
				CiphertextBlob: pair.PrivateKeyCiphertextBlob, EncryptionContext: map[string]string{"use": "tls"}})).Plaintext
			if !bytes.Equal(priv, pair.PrivateKeyPlaintext) {
				t.Fatalf("%s: the private key blob does not decrypt to the private key", spec)
			}
			o.write("pair.pub.der", pair.PublicKey)
			o.write("pair.key.der", priv)
			o.must("pkey", "-pubin", "-inform", "DER", "-in", "pair.pub.der", "-noout")
			o.must("pkey", "-inform", "DER", "-in", "pair.key.der", "-pubout", "-outform", "DER", "-out", "derived.pub.der")
			if !bytes.Equal(o.read("derived.pub.der"), pair.PublicKey) {
				t.Errorf("%s: openssl derives another public key from the private half", spec)
			}
			text := o.must("pkey", "-inform", "DER", "-in", "pair.key.der", "-noout", "-text")
			if want := map[string]string{"RSA_2048": "2048 bit", "ECC_NIST_P256": "P-256"}[spec]; !strings.Contains(text, want) {
				t.Errorf("%s: openssl describes the private key without %q", spec, want)
			}
		}
	})
	c.WaitConverged(t)
}

// TestAsymmetricKeysSurviveSnapshotAndRestart: asymmetric and HMAC keys in
// the log and in snapshots come back after every node restarts, with the
// same public keys; old signatures and MACs still verify on every node.
func TestAsymmetricKeysSurviveSnapshotAndRestart(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx := apiCtx(t)
	msg := []byte("before the snapshot")
	rsaKey := must[*kmsv1.CreateKeyResponse](t, "CreateKey RSA")(c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{
		KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})).KeyMetadata.KeyId
	eccKey := must[*kmsv1.CreateKeyResponse](t, "CreateKey ECC")(c.KMS(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{
		KeySpec: "ECC_NIST_P384", KeyUsage: "SIGN_VERIFY"})).KeyMetadata.KeyId
	macKey := must[*kmsv1.CreateKeyResponse](t, "CreateKey HMAC")(c.KMS(2).CreateKey(ctx, &kmsv1.CreateKeyRequest{
		KeySpec: "HMAC_224", KeyUsage: "GENERATE_VERIFY_MAC"})).KeyMetadata.KeyId
	rsaSig := must[*kmsv1.SignResponse](t, "Sign")(c.KMS(1).Sign(ctx, &kmsv1.SignRequest{KeyId: rsaKey, Message: msg, SigningAlgorithm: "RSASSA_PSS_SHA_384"})).Signature
	eccSig := must[*kmsv1.SignResponse](t, "Sign")(c.KMS(2).Sign(ctx, &kmsv1.SignRequest{KeyId: eccKey, Message: msg, SigningAlgorithm: "ECDSA_SHA_384"})).Signature
	mac := must[*kmsv1.GenerateMacResponse](t, "GenerateMac")(c.KMS(0).GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: macKey, Message: msg, MacAlgorithm: "HMAC_SHA_224"})).Mac
	pubs := map[string][]byte{}
	for _, k := range []string{rsaKey, eccKey} {
		pubs[k] = must[*kmsv1.GetPublicKeyResponse](t, "GetPublicKey")(c.KMS(0).GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: k})).PublicKey
	}
	c.WaitConverged(t)
	ctx = apiCtx(t)
	for i := range 3 {
		if _, err := c.ClusterAPI(i).Snapshot(ctx, &clusterv1.SnapshotRequest{}); err != nil {
			t.Fatalf("snapshot node %d: %v", i, err)
		}
	}
	// One more key after the snapshot, so restart replays log entries too.
	late := must[*kmsv1.CreateKeyResponse](t, "CreateKey late")(c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{
		KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})).KeyMetadata.KeyId
	latePub := must[*kmsv1.GetPublicKeyResponse](t, "GetPublicKey")(c.KMS(1).GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: late})).PublicKey
	for i := range 3 {
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
	}
	c.WaitConverged(t)
	ctx = apiCtx(t)
	for i := range 3 {
		kms := c.KMS(i)
		must[*kmsv1.VerifyResponse](t, "Verify RSA after restart")(kms.Verify(ctx, &kmsv1.VerifyRequest{KeyId: rsaKey, Message: msg, Signature: rsaSig, SigningAlgorithm: "RSASSA_PSS_SHA_384"}))
		must[*kmsv1.VerifyResponse](t, "Verify ECC after restart")(kms.Verify(ctx, &kmsv1.VerifyRequest{KeyId: eccKey, Message: msg, Signature: eccSig, SigningAlgorithm: "ECDSA_SHA_384"}))
		must[*kmsv1.VerifyMacResponse](t, "VerifyMac after restart")(kms.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: macKey, Message: msg, Mac: mac, MacAlgorithm: "HMAC_SHA_224"}))
		for k, want := range map[string][]byte{rsaKey: pubs[rsaKey], eccKey: pubs[eccKey], late: latePub} {
			got := must[*kmsv1.GetPublicKeyResponse](t, "GetPublicKey after restart")(kms.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: k})).PublicKey
			if !bytes.Equal(got, want) {
				t.Errorf("node %d: the public key of %s changed across the restart", i, k)
			}
		}
	}
}

// asymmetricWorkload makes RSA, ECC and HMAC keys and uses them on every
// node (sign, MAC, data key pairs), for the secret scan of
// TestNoSecretsAnywhere. It returns the keys, whose unsealed material the
// scan adds itself, and the data key pairs' private keys with their parts.
func asymmetricWorkload(t *testing.T, c *testcluster.Cluster, sym string) (keys []string, secrets [][]byte) {
	t.Helper()
	ctx := apiCtx(t)
	for i, spec := range []struct{ spec, usage string }{{"RSA_2048", "SIGN_VERIFY"}, {"ECC_NIST_P256", "SIGN_VERIFY"},
		{"RSA_2048", "ENCRYPT_DECRYPT"}, {"HMAC_256", "GENERATE_VERIFY_MAC"}} {
		key := must[*kmsv1.CreateKeyResponse](t, "CreateKey "+spec.spec)(c.KMS(i%3).CreateKey(ctx, &kmsv1.CreateKeyRequest{
			KeySpec: spec.spec, KeyUsage: spec.usage})).KeyMetadata.KeyId
		keys = append(keys, key)
		kms := c.KMS((i + 1) % 3)
		switch {
		case spec.usage == "GENERATE_VERIFY_MAC":
			must[*kmsv1.GenerateMacResponse](t, "GenerateMac")(kms.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: key, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256"}))
		case spec.usage == "ENCRYPT_DECRYPT":
			pt := []byte("very-secret-rsa-plaintext-" + key)
			ct := must[*kmsv1.EncryptResponse](t, "Encrypt RSA")(kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: pt, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}))
			must[*kmsv1.DecryptResponse](t, "Decrypt RSA")(c.KMS((i+2)%3).Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: key, CiphertextBlob: ct.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}))
			secrets = append(secrets, pt)
		case spec.spec == "RSA_2048":
			must[*kmsv1.SignResponse](t, "Sign")(kms.Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: []byte("m"), SigningAlgorithm: "RSASSA_PSS_SHA_256"}))
		default:
			must[*kmsv1.SignResponse](t, "Sign")(kms.Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"}))
		}
	}
	for i, spec := range []string{"RSA_2048", "ECC_NIST_P384"} {
		pair := must[*kmsv1.GenerateDataKeyPairResponse](t, "GenerateDataKeyPair")(c.KMS(i).GenerateDataKeyPair(ctx,
			&kmsv1.GenerateDataKeyPairRequest{KeyId: sym, KeyPairSpec: spec}))
		secrets = append(append(secrets, pair.PrivateKeyPlaintext), privateKeyParts(t, pair.PrivateKeyPlaintext)...)
	}
	return keys, secrets
}

// privateKeyParts are the secret numbers inside PKCS#8 private key
// material (RSA primes and exponent, the ECDSA scalar), so a scan finds a
// private key written in any encoding that keeps them; nil for other
// material (symmetric and HMAC keys are secrets as they are).
func privateKeyParts(t *testing.T, der []byte) [][]byte {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil
	}
	switch p := k.(type) {
	case *rsa.PrivateKey:
		return [][]byte{p.D.Bytes(), p.Primes[0].Bytes(), p.Primes[1].Bytes()}
	case *ecdsa.PrivateKey:
		b, err := p.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{b}
	}
	return nil
}
