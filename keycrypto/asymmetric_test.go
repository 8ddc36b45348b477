package keycrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
)

func TestCheckKeySpec(t *testing.T) {
	for _, c := range []struct {
		spec, usage         string
		wantSpec, wantUsage string
		ok                  bool
	}{
		{"", "", SpecSymmetric, UsageEncryptDecrypt, true},
		{SpecSymmetric, UsageSignVerify, "", "", false},
		{"RSA_2048", "", "RSA_2048", UsageEncryptDecrypt, true},
		{"RSA_4096", UsageSignVerify, "RSA_4096", UsageSignVerify, true},
		{"RSA_3072", UsageGenerateVerifyMAC, "", "", false},
		{"ECC_NIST_P384", "", "ECC_NIST_P384", UsageSignVerify, true},
		{"ECC_NIST_P256", UsageEncryptDecrypt, "", "", false},
		{"HMAC_224", "", "HMAC_224", UsageGenerateVerifyMAC, true},
		{"HMAC_512", UsageSignVerify, "", "", false},
		{"ECC_SECG_P256K1", UsageSignVerify, "", "", false},
		{"RSA_1024", "", "", "", false},
	} {
		spec, usage, err := CheckKeySpec(c.spec, c.usage)
		if (err == nil) != c.ok || spec != c.wantSpec || usage != c.wantUsage {
			t.Errorf("CheckKeySpec(%q, %q) = %q, %q, %v; want %q, %q, ok=%v", c.spec, c.usage, spec, usage, err, c.wantSpec, c.wantUsage, c.ok)
		}
	}
}

func TestAlgorithmLists(t *testing.T) {
	if got := SigningAlgorithms("ECC_NIST_P521", UsageSignVerify); !slices.Equal(got, []string{AlgECDSASHA512}) {
		t.Errorf("P521 signing algorithms %v", got)
	}
	if got := SigningAlgorithms("RSA_2048", UsageSignVerify); len(got) != 6 {
		t.Errorf("RSA signing algorithms %v", got)
	}
	if got := SigningAlgorithms("RSA_2048", UsageEncryptDecrypt); got != nil {
		t.Errorf("an ENCRYPT_DECRYPT key lists signing algorithms %v", got)
	}
	if got := EncryptionAlgorithms("RSA_3072", UsageEncryptDecrypt); !slices.Equal(got, []string{AlgRSAOAEPSHA1, AlgRSAOAEPSHA256}) {
		t.Errorf("RSA encryption algorithms %v", got)
	}
	if got := MACAlgorithms("HMAC_384"); !slices.Equal(got, []string{AlgHMACSHA384}) {
		t.Errorf("HMAC_384 MAC algorithms %v", got)
	}
}

func parsed(t *testing.T, spec string) *AsymmetricKey {
	t.Helper()
	der, err := GenerateKeyMaterial(rand.Reader, spec)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseAsymmetricKey(spec, der)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignVerify signs with each algorithm and checks the signature with
// the standard library's verifiers on the public key alone, as a client
// holding only GetPublicKey's answer would.
func TestSignVerify(t *testing.T) {
	msg := []byte("the message")
	for _, c := range []struct {
		spec string
		algs []string
	}{
		{"RSA_2048", SigningAlgorithms("RSA_2048", UsageSignVerify)},
		{"ECC_NIST_P256", []string{AlgECDSASHA256}},
		{"ECC_NIST_P384", []string{AlgECDSASHA384}},
		{"ECC_NIST_P521", []string{AlgECDSASHA512}},
	} {
		k := parsed(t, c.spec)
		pub, err := x509.ParsePKIXPublicKey(k.PublicKeyDER())
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range c.algs {
			sig, err := k.Sign(rand.Reader, alg, MessageRaw, msg)
			if err != nil {
				t.Fatalf("%s %s: %v", c.spec, alg, err)
			}
			a := signingAlgs[alg]
			h := a.hash.New()
			h.Write(msg)
			d := h.Sum(nil)
			switch p := pub.(type) {
			case *rsa.PublicKey:
				if a.pss {
					err = rsa.VerifyPSS(p, a.hash, d, sig, &rsa.PSSOptions{SaltLength: a.hash.Size()})
				} else {
					err = rsa.VerifyPKCS1v15(p, a.hash, d, sig)
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(p, d, sig) {
					err = errors.New("ECDSA signature does not verify")
				}
			}
			if err != nil {
				t.Errorf("%s %s: %v", c.spec, alg, err)
			}
			if err := k.Verify(alg, MessageRaw, msg, sig); err != nil {
				t.Errorf("%s %s: Verify: %v", c.spec, alg, err)
			}
			// The same signature over the digest.
			if err := k.Verify(alg, MessageDigest, d, sig); err != nil {
				t.Errorf("%s %s: Verify DIGEST: %v", c.spec, alg, err)
			}
			bad := append([]byte(nil), sig...)
			bad[len(bad)/2] ^= 1
			if err := k.Verify(alg, MessageRaw, msg, bad); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("%s %s: flipped signature: %v", c.spec, alg, err)
			}
			if err := k.Verify(alg, MessageRaw, []byte("another message"), sig); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("%s %s: other message: %v", c.spec, alg, err)
			}
		}
	}
}

func TestSignRules(t *testing.T) {
	rsaKey, ecKey := parsed(t, "RSA_2048"), parsed(t, "ECC_NIST_P256")
	d := sha256.Sum256([]byte("x"))
	for _, c := range []struct {
		name    string
		k       *AsymmetricKey
		alg, mt string
		msg     []byte
		want    error
	}{
		{"ECDSA on RSA", rsaKey, AlgECDSASHA256, MessageRaw, []byte("x"), ErrAlgorithm},
		{"RSA on ECC", ecKey, AlgPSSSHA256, MessageRaw, []byte("x"), ErrAlgorithm},
		{"other curve's hash", ecKey, AlgECDSASHA384, MessageRaw, []byte("x"), ErrAlgorithm},
		{"unknown", rsaKey, "RSASSA_PSS_SHA_1", MessageRaw, []byte("x"), ErrAlgorithm},
		{"empty", rsaKey, AlgPSSSHA256, MessageRaw, nil, ErrMessage},
		{"too long", rsaKey, AlgPSSSHA256, MessageRaw, make([]byte, MaxSignMessage+1), ErrMessage},
		{"short digest", ecKey, AlgECDSASHA256, MessageDigest, d[:31], ErrMessage},
		{"SHA-384 digest for SHA-256", rsaKey, AlgPKCS1SHA256, MessageDigest, make([]byte, 48), ErrMessage},
		{"bad type", rsaKey, AlgPSSSHA256, "HASHED", d[:], ErrMessage},
		{"largest", rsaKey, AlgPSSSHA256, MessageRaw, make([]byte, MaxSignMessage), nil},
		{"digest", ecKey, AlgECDSASHA256, MessageDigest, d[:], nil},
	} {
		_, err := c.k.Sign(rand.Reader, c.alg, c.mt, c.msg)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestParseAsymmetricKeyChecksSpec(t *testing.T) {
	der, err := GenerateKeyMaterial(rand.Reader, "ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"ECC_NIST_P384", "RSA_2048", "HMAC_256", SpecSymmetric} {
		if _, err := ParseAsymmetricKey(spec, der); err == nil {
			t.Errorf("P-256 material parsed as %s", spec)
		}
	}
	if _, err := ParseAsymmetricKey("ECC_NIST_P256", der[:len(der)-1]); err == nil {
		t.Error("truncated material parsed")
	}
}

func TestOAEP(t *testing.T) {
	k := parsed(t, "RSA_2048")
	pub, err := x509.ParsePKIXPublicKey(k.PublicKeyDER())
	if err != nil {
		t.Fatal(err)
	}
	for alg, h := range map[string]crypto.Hash{AlgRSAOAEPSHA1: crypto.SHA1, AlgRSAOAEPSHA256: crypto.SHA256} {
		max := k.MaxOAEPPlaintext(alg)
		if want := 256 - 2*h.Size() - 2; max != want {
			t.Errorf("%s: max plaintext %d, want %d", alg, max, want)
		}
		pt := make([]byte, max)
		pt[0] = 7
		// Ciphertext made with the public key alone decrypts.
		ct, err := rsa.EncryptOAEP(h.New(), rand.Reader, pub.(*rsa.PublicKey), pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.Decrypt(alg, ct)
		if err != nil || !slices.Equal(got, pt) {
			t.Errorf("%s: decrypt: %v", alg, err)
		}
		if _, err := k.Encrypt(rand.Reader, alg, make([]byte, max+1)); !errors.Is(err, ErrMessage) {
			t.Errorf("%s: oversized plaintext: %v", alg, err)
		}
		ct2, err := k.Encrypt(rand.Reader, alg, []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		ct2[10] ^= 1
		if _, err := k.Decrypt(alg, ct2); !errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("%s: tampered ciphertext: %v", alg, err)
		}
	}
	ct, _ := k.Encrypt(rand.Reader, AlgRSAOAEPSHA256, []byte("hi"))
	if _, err := k.Decrypt(AlgRSAOAEPSHA1, ct); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("SHA-256 ciphertext decrypted as SHA-1: %v", err)
	}
	if _, err := parsed(t, "ECC_NIST_P256").Decrypt(AlgRSAOAEPSHA256, ct); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("ECC key decrypts: %v", err)
	}
}

func TestGenerateKeyPair(t *testing.T) {
	for _, spec := range []string{"RSA_2048", "ECC_NIST_P256", "ECC_NIST_P521"} {
		priv, pub, err := GenerateKeyPair(rand.Reader, spec)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseAsymmetricKey(spec, priv)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(k.PublicKeyDER(), pub) {
			t.Errorf("%s: public half does not match the private half", spec)
		}
	}
	for _, spec := range []string{"HMAC_256", SpecSymmetric, "RSA_1024"} {
		if _, _, err := GenerateKeyPair(rand.Reader, spec); err == nil {
			t.Errorf("GenerateKeyPair(%s) succeeded", spec)
		}
	}
}

// TestHMACVectors checks the MACs against RFC 4231 test case 2.
func TestHMACVectors(t *testing.T) {
	key := make([]byte, 64) // "Jefe" is too short for AWS's bounds: pad as HMAC itself would
	copy(key, "Jefe")
	msg := []byte("what do ya want for nothing?")
	for spec, want := range map[string]string{
		"HMAC_224": "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
		"HMAC_256": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		"HMAC_512": "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
	} {
		k, err := NewMACKey(spec, key)
		if err != nil {
			t.Fatal(err)
		}
		alg := MACAlgorithms(spec)[0]
		mac, err := k.MAC(alg, msg)
		if err != nil || hex.EncodeToString(mac) != want {
			t.Errorf("%s: %x, %v; want %s", spec, mac, err, want)
		}
		if err := k.Verify(alg, msg, mac); err != nil {
			t.Errorf("%s: Verify: %v", spec, err)
		}
		mac[0] ^= 1
		if err := k.Verify(alg, msg, mac); !errors.Is(err, ErrInvalidMAC) {
			t.Errorf("%s: flipped MAC: %v", spec, err)
		}
		if _, err := k.MAC(AlgHMACSHA384, msg); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("%s: HMAC_SHA_384: %v", spec, err)
		}
	}
	if _, err := NewMACKey("HMAC_256", make([]byte, 31)); err == nil {
		t.Error("31-byte HMAC_256 key accepted")
	}
	if _, err := NewMACKey("HMAC_384", make([]byte, 129)); err == nil {
		t.Error("129-byte HMAC_384 key accepted")
	}
}

func TestCacheKinds(t *testing.T) {
	c := NewCache(0)
	der, _ := GenerateKeyMaterial(rand.Reader, "ECC_NIST_P256")
	opens := 0
	open := func() ([]byte, error) { opens++; return append([]byte(nil), der...), nil }
	a, err := c.Asymmetric("k", 1, "ECC_NIST_P256", open)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Asymmetric("k", 1, "ECC_NIST_P256", open)
	if err != nil || a != b || opens != 1 {
		t.Fatalf("second lookup: same=%v opens=%d err=%v", a == b, opens, err)
	}
	if _, err := c.MAC("k", 1, "HMAC_256", open); err == nil {
		t.Error("an asymmetric entry was handed out as a MAC key")
	}
	c.Forget("k")
	if c.Len() != 0 {
		t.Errorf("Len %d after Forget", c.Len())
	}
}
