package rpc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
)

// asymKeys makes one key of each kind the tests below use, owned by alice.
func asymKeys(t *testing.T, h *harness) (sym, rsaSign, rsaEnc, ecc, hmacKey string) {
	t.Helper()
	sym = h.createKey("alice", nil)
	rsaSign = h.createKey("alice", &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})
	rsaEnc = h.createKey("alice", &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048"})
	ecc = h.createKey("alice", &kmsv1.CreateKeyRequest{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	hmacKey = h.createKey("alice", &kmsv1.CreateKeyRequest{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	return
}

func TestAsymmetricMetadata(t *testing.T) {
	h := newHarness(t)
	c, ctx := h.kms("alice"), testCtx(t)
	_, rsaSign, rsaEnc, ecc, hmacKey := asymKeys(t, h)
	for _, tc := range []struct {
		id, spec, usage string
		enc, sign, macs int
	}{
		{rsaSign, "RSA_2048", "SIGN_VERIFY", 0, 6, 0},
		{rsaEnc, "RSA_2048", "ENCRYPT_DECRYPT", 2, 0, 0},
		{ecc, "ECC_NIST_P256", "SIGN_VERIFY", 0, 1, 0},
		{hmacKey, "HMAC_256", "GENERATE_VERIFY_MAC", 0, 0, 1},
	} {
		resp, err := c.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: tc.id})
		if err != nil {
			t.Fatal(err)
		}
		md := resp.KeyMetadata
		if md.KeySpec != tc.spec || md.KeyUsage != tc.usage || len(md.EncryptionAlgorithms) != tc.enc ||
			len(md.SigningAlgorithms) != tc.sign || len(md.MacAlgorithms) != tc.macs {
			t.Errorf("%s: %s %s enc=%v sign=%v mac=%v", tc.spec, md.KeySpec, md.KeyUsage, md.EncryptionAlgorithms,
				md.SigningAlgorithms, md.MacAlgorithms)
		}
	}
}

// TestAsymmetricRoundTrips: what raftkms signs, encrypts and MACs checks
// with the standard library against the public key from GetPublicKey.
func TestAsymmetricRoundTrips(t *testing.T) {
	h := newHarness(t)
	c, ctx := h.kms("alice"), testCtx(t)
	sym, rsaSign, rsaEnc, ecc, hmacKey := asymKeys(t, h)
	msg := []byte("sign me")

	for _, tc := range []struct{ id, alg string }{{rsaSign, "RSASSA_PSS_SHA_256"}, {rsaSign, "RSASSA_PKCS1_V1_5_SHA_256"}, {ecc, "ECDSA_SHA_256"}} {
		sig, err := c.Sign(ctx, &kmsv1.SignRequest{KeyId: tc.id, Message: msg, SigningAlgorithm: tc.alg})
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		pk, err := c.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: tc.id})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(msg)
		switch p := pub.(type) {
		case *rsa.PublicKey:
			if tc.alg == "RSASSA_PSS_SHA_256" {
				err = rsa.VerifyPSS(p, crypto.SHA256, d[:], sig.Signature, nil)
			} else {
				err = rsa.VerifyPKCS1v15(p, crypto.SHA256, d[:], sig.Signature)
			}
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(p, d[:], sig.Signature) {
				err = keycrypto.ErrInvalidSignature
			}
		}
		if err != nil {
			t.Errorf("%s: stdlib verify: %v", tc.alg, err)
		}
		if _, err := c.Verify(ctx, &kmsv1.VerifyRequest{KeyId: tc.id, Message: d[:], MessageType: "DIGEST", Signature: sig.Signature, SigningAlgorithm: tc.alg}); err != nil {
			t.Errorf("%s: Verify DIGEST: %v", tc.alg, err)
		}
		bad := bytes.Clone(sig.Signature)
		bad[3] ^= 1
		_, err = c.Verify(ctx, &kmsv1.VerifyRequest{KeyId: tc.id, Message: msg, Signature: bad, SigningAlgorithm: tc.alg})
		wantCode(t, tc.alg+" bad signature", err, codes.InvalidArgument, "KMSInvalidSignatureException")
	}

	// RSA-OAEP: a ciphertext made with the public key alone decrypts.
	pk, err := c.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: rsaEnc})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.ParsePKIXPublicKey(pk.PublicKey)
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: rsaEnc, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	if err != nil || string(dec.Plaintext) != "secret" {
		t.Fatalf("Decrypt: %v", err)
	}
	enc, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: rsaEnc, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
	if err != nil || len(enc.CiphertextBlob) != 256 || enc.EncryptionAlgorithm != "RSAES_OAEP_SHA_1" {
		t.Fatalf("Encrypt: %v", err)
	}
	_, err = c.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	wantCode(t, "RSA decrypt without KeyId", err, codes.InvalidArgument, "ValidationException")

	// HMAC: GenerateMac and VerifyMac agree; a flipped MAC is refused.
	mac, err := c.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: hmacKey, Message: msg, MacAlgorithm: "HMAC_SHA_256"})
	if err != nil || len(mac.Mac) != 32 {
		t.Fatalf("GenerateMac: %v", err)
	}
	if _, err := c.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: hmacKey, Message: msg, MacAlgorithm: "HMAC_SHA_256", Mac: mac.Mac}); err != nil {
		t.Fatal(err)
	}
	mac.Mac[0] ^= 1
	_, err = c.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: hmacKey, Message: msg, MacAlgorithm: "HMAC_SHA_256", Mac: mac.Mac})
	wantCode(t, "flipped MAC", err, codes.InvalidArgument, "KMSInvalidMacException")

	// Data key pairs: the private half decrypts from its blob and matches the public half.
	pair, err := c.GenerateDataKeyPair(ctx, &kmsv1.GenerateDataKeyPairRequest{KeyId: sym, KeyPairSpec: "ECC_NIST_P384",
		EncryptionContext: map[string]string{"app": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: pair.PrivateKeyCiphertextBlob, EncryptionContext: map[string]string{"app": "x"}})
	if err != nil || !bytes.Equal(plain.Plaintext, pair.PrivateKeyPlaintext) {
		t.Fatalf("private half does not decrypt: %v", err)
	}
	ak, err := keycrypto.ParseAsymmetricKey("ECC_NIST_P384", plain.Plaintext)
	if err != nil || !bytes.Equal(ak.PublicKeyDER(), pair.PublicKey) {
		t.Fatalf("public half does not match: %v", err)
	}
	np, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kmsv1.GenerateDataKeyPairWithoutPlaintextRequest{KeyId: sym, KeyPairSpec: "RSA_2048"})
	if err != nil || len(np.PublicKey) == 0 || len(np.PrivateKeyCiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %v", err)
	}
}

// TestAsymmetricRules: wrong usage, wrong algorithms and bad messages, by
// AWS KMS's exception names.
func TestAsymmetricRules(t *testing.T) {
	h := newHarness(t)
	c, ctx := h.kms("alice"), testCtx(t)
	sym, rsaSign, rsaEnc, ecc, hmacKey := asymKeys(t, h)
	d256 := make([]byte, 32)
	sign := func(id, alg, mt string, msg []byte) error {
		_, err := c.Sign(ctx, &kmsv1.SignRequest{KeyId: id, Message: msg, MessageType: mt, SigningAlgorithm: alg})
		return err
	}
	for _, tc := range []struct {
		name      string
		call      func() error
		code      codes.Code
		exception string
	}{
		{"sign with symmetric key", func() error { return sign(sym, "RSASSA_PSS_SHA_256", "", []byte("m")) }, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"sign with RSA encryption key", func() error { return sign(rsaEnc, "RSASSA_PSS_SHA_256", "", []byte("m")) }, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"sign with HMAC key", func() error { return sign(hmacKey, "RSASSA_PSS_SHA_256", "", []byte("m")) }, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"ECDSA on RSA", func() error { return sign(rsaSign, "ECDSA_SHA_256", "", []byte("m")) }, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"P-256 with SHA-384", func() error { return sign(ecc, "ECDSA_SHA_384", "", []byte("m")) }, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"no algorithm", func() error { return sign(ecc, "", "", []byte("m")) }, codes.InvalidArgument, "ValidationException"},
		{"message too long", func() error { return sign(ecc, "ECDSA_SHA_256", "RAW", make([]byte, 4097)) }, codes.InvalidArgument, "ValidationException"},
		{"short digest", func() error { return sign(ecc, "ECDSA_SHA_256", "DIGEST", d256[:20]) }, codes.InvalidArgument, "ValidationException"},
		{"digest", func() error { return sign(ecc, "ECDSA_SHA_256", "DIGEST", d256) }, codes.OK, ""},
		{"largest RAW", func() error { return sign(rsaSign, "RSASSA_PKCS1_V1_5_SHA_512", "RAW", make([]byte, 4096)) }, codes.OK, ""},
		{"encrypt symmetric with RSA algorithm", func() error {
			_, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: sym, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"encrypt RSA without algorithm", func() error {
			_, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: rsaEnc, Plaintext: []byte("x")})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"encrypt RSA too long", func() error {
			_, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: rsaEnc, Plaintext: make([]byte, 191), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"encrypt with signing key", func() error {
			_, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: rsaSign, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"encrypt with HMAC key", func() error {
			_, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: hmacKey, Plaintext: []byte("x")})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"garbage RSA ciphertext", func() error {
			_, err := c.Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: rsaEnc, CiphertextBlob: make([]byte, 256), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
			return err
		}, codes.InvalidArgument, "InvalidCiphertextException"},
		{"data key under RSA key", func() error {
			_, err := c.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: rsaEnc, KeySpec: "AES_256"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"data key pair under ECC key", func() error {
			_, err := c.GenerateDataKeyPair(ctx, &kmsv1.GenerateDataKeyPairRequest{KeyId: ecc, KeyPairSpec: "RSA_2048"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"data key pair of HMAC spec", func() error {
			_, err := c.GenerateDataKeyPair(ctx, &kmsv1.GenerateDataKeyPairRequest{KeyId: sym, KeyPairSpec: "HMAC_256"})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"MAC with ECC key", func() error {
			_, err := c.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: ecc, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"MAC with another hash", func() error {
			_, err := c.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: hmacKey, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_512"})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"public key of symmetric key", func() error {
			_, err := c.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: sym})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"public key of HMAC key", func() error {
			_, err := c.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: hmacKey})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"rotation of RSA key", func() error {
			_, err := c.EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: rsaSign})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"on-demand rotation of ECC key", func() error {
			_, err := c.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: ecc})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"rotation of HMAC key", func() error {
			_, err := c.EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: hmacKey})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"re-encrypt from RSA", func() error {
			_, err := c.ReEncrypt(ctx, &kmsv1.ReEncryptRequest{CiphertextBlob: make([]byte, 256), SourceKeyId: rsaEnc,
				SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256", DestinationKeyId: sym})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
		{"re-encrypt to RSA", func() error {
			enc, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: sym, Plaintext: []byte("x")})
			if err != nil {
				return err
			}
			_, err = c.ReEncrypt(ctx, &kmsv1.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: rsaEnc})
			return err
		}, codes.InvalidArgument, "InvalidKeyUsageException"},
		{"another identity signs", func() error {
			_, err := h.kms("mallory").Sign(ctx, &kmsv1.SignRequest{KeyId: ecc, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}, codes.PermissionDenied, "AccessDeniedException"},
		{"create ECC encryption key", func() error {
			_, err := c.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeySpec: "ECC_NIST_P256", KeyUsage: "ENCRYPT_DECRYPT"})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"create unknown spec", func() error {
			_, err := c.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeySpec: "ECC_SECG_P256K1", KeyUsage: "SIGN_VERIFY"})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"create external RSA", func() error {
			_, err := c.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY", Origin: "EXTERNAL"})
			return err
		}, codes.FailedPrecondition, "UnsupportedOperationException"},
	} {
		wantCode(t, tc.name, tc.call(), tc.code, tc.exception)
	}

	// A disabled signing key refuses to sign.
	if _, err := c.DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: ecc}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "disabled key", sign(ecc, "ECDSA_SHA_256", "", []byte("m")), codes.FailedPrecondition, "DisabledException")
}

// TestAsymmetricMaterialSealed: the proposed CreateKey carries the private
// key only sealed under the root key, bound to the key ID and version 1.
func TestAsymmetricMaterialSealed(t *testing.T) {
	h := newHarness(t)
	id := h.createKey("alice", &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})
	ev := h.node.last().GetCreateKey()
	if ev == nil || ev.KeySpec != "RSA_2048" || ev.KeyUsage != "SIGN_VERIFY" {
		t.Fatalf("last event %v", h.node.last())
	}
	if _, err := x509.ParsePKCS8PrivateKey(ev.SealedMaterial); err == nil {
		t.Fatal("the event carries a plaintext private key")
	}
	root, _ := keycrypto.NewRootKey(bytes.Repeat([]byte{7}, 32))
	der, err := root.Open(id, 1, ev.SealedMaterial)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := keycrypto.ParseAsymmetricKey("RSA_2048", der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := h.kms("alice").GetPublicKey(testCtx(t), &kmsv1.GetPublicKeyRequest{KeyId: id})
	if err != nil || !bytes.Equal(pk.PublicKey, ak.PublicKeyDER()) {
		t.Fatalf("GetPublicKey does not match the sealed private key: %v", err)
	}
	if _, err := root.Open("another-key", 1, ev.SealedMaterial); err == nil {
		t.Fatal("sealed material opens for another key ID")
	}
}

// TestRSAKeyPairsThrottled: RSA data key pairs are limited per identity
// (each is an RSA key generation on the answering node); ECC pairs are not
// held back, and the bucket refills with time.
func TestRSAKeyPairsThrottled(t *testing.T) {
	h := newHarness(t)
	h.srv.rsaPairs = newThrottle(2, h.clock.Now) // the default allows 120 a minute
	sym := h.createKey("alice", nil)
	pair := func(who, spec string) error {
		_, err := h.kms(who).GenerateDataKeyPairWithoutPlaintext(testCtx(t), &kmsv1.GenerateDataKeyPairWithoutPlaintextRequest{KeyId: sym, KeyPairSpec: spec})
		return err
	}
	wantCode(t, "first RSA pair", pair("alice", "RSA_2048"), codes.OK, "")
	wantCode(t, "second RSA pair", pair("alice", "RSA_2048"), codes.OK, "")
	wantCode(t, "third RSA pair", pair("alice", "RSA_2048"), codes.ResourceExhausted, "ThrottlingException")
	wantCode(t, "ECC pair", pair("alice", "ECC_NIST_P256"), codes.OK, "")
	h.clock.Advance(time.Minute)
	wantCode(t, "RSA pair a minute later", pair("alice", "RSA_2048"), codes.OK, "")
}
