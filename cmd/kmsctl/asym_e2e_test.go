package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAsymmetricCommands drives sign, verify, get-public-key, generate-mac,
// verify-mac and the data key pair commands against a real cluster, as the
// README shows them: a digest signed on one node verifies on another and
// with the public key alone.
func TestAsymmetricCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	eps := startCluster(t)
	n1, n2, n3 := eps[0], eps[1], eps[2]
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return "fileb://" + p
	}
	b64 := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("%q is not base64: %v", s, err)
		}
		return b
	}

	out := kmsctl(t, "create-key", "--endpoints", n1, "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")
	md, _ := decodeJSON(t, out)["KeyMetadata"].(map[string]any)
	key, _ := md["KeyId"].(string)
	if md["KeySpec"] != "ECC_NIST_P256" || md["KeyUsage"] != "SIGN_VERIFY" || !strings.Contains(out, `"SigningAlgorithms": [`) ||
		!strings.Contains(out, `"ECDSA_SHA_256"`) || strings.Contains(out, "EncryptionAlgorithms") {
		t.Fatalf("create-key output:\n%s", out)
	}
	digest := sha256.Sum256([]byte("release tarball"))
	sig := b64(kmsctl(t, "sign", "--endpoints", n2, "--key-id", key, "--message", file("digest", digest[:]),
		"--message-type", "DIGEST", "--signing-algorithm", "ECDSA_SHA_256", "--query", "Signature", "--output", "text"))
	pub := b64(kmsctl(t, "get-public-key", "--endpoints", n3, "--key-id", key, "--query", "PublicKey", "--output", "text"))
	pk, err := x509.ParsePKIXPublicKey(pub)
	if err != nil || !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("the signature does not verify with the public key (%v)", err)
	}
	out = kmsctl(t, "verify", "--endpoints", n3, "--key-id", key, "--message", file("digest", digest[:]), "--message-type", "DIGEST",
		"--signature", file("sig", sig), "--signing-algorithm", "ECDSA_SHA_256")
	if v := decodeJSON(t, out); v["SignatureValid"] != true || v["SigningAlgorithm"] != "ECDSA_SHA_256" {
		t.Fatalf("verify output:\n%s", out)
	}
	kmsctlFails(t, "KMSInvalidSignatureException", "verify", "--endpoints", n1, "--key-id", key,
		"--message", file("other", []byte("another message")), "--signature", file("sig", sig), "--signing-algorithm", "ECDSA_SHA_256")
	kmsctlFails(t, "DryRunOperationException", "sign", "--endpoints", n2, "--key-id", key, "--message", file("digest", digest[:]),
		"--message-type", "DIGEST", "--signing-algorithm", "ECDSA_SHA_256", "--dry-run")
	kmsctlFails(t, "DryRunOperationException", "verify", "--endpoints", n3, "--key-id", key, "--message", file("digest", digest[:]),
		"--message-type", "DIGEST", "--signature", file("sig", sig), "--signing-algorithm", "ECDSA_SHA_256", "--dry-run")
	// A dry run that would fail answers the real error, not DryRunOperationException.
	kmsctlFails(t, "InvalidKeyUsageException", "generate-mac", "--endpoints", n1, "--key-id", key, "--message", "aGVsbG8=",
		"--mac-algorithm", "HMAC_SHA_256", "--dry-run")
	kmsctlFails(t, "InvalidKeyUsageException", "encrypt", "--endpoints", n1, "--key-id", key, "--plaintext", "aGk=")
	kmsctlFails(t, "UnsupportedOperationException", "enable-key-rotation", "--endpoints", n1, "--key-id", key)

	hk := strings.TrimSpace(kmsctl(t, "create-key", "--endpoints", n2, "--key-spec", "HMAC_256", "--key-usage", "GENERATE_VERIFY_MAC",
		"--query", "KeyMetadata.KeyId", "--output", "text"))
	mac := kmsctl(t, "generate-mac", "--endpoints", n3, "--key-id", hk, "--message", "aGVsbG8=", "--mac-algorithm", "HMAC_SHA_256",
		"--query", "Mac", "--output", "text")
	if len(b64(mac)) != 32 {
		t.Fatalf("MAC %q", mac)
	}
	out = kmsctl(t, "verify-mac", "--endpoints", n1, "--key-id", hk, "--message", "aGVsbG8=", "--mac-algorithm", "HMAC_SHA_256", "--mac", strings.TrimSpace(mac))
	if decodeJSON(t, out)["MacValid"] != true {
		t.Fatalf("verify-mac output:\n%s", out)
	}
	kmsctlFails(t, "DryRunOperationException", "generate-mac", "--endpoints", n3, "--key-id", hk, "--message", "aGVsbG8=",
		"--mac-algorithm", "HMAC_SHA_256", "--dry-run")
	kmsctlFails(t, "DryRunOperationException", "verify-mac", "--endpoints", n2, "--key-id", hk, "--message", "aGVsbG8=",
		"--mac-algorithm", "HMAC_SHA_256", "--mac", strings.TrimSpace(mac), "--dry-run")
	kmsctlFails(t, "InvalidKeyUsageException", "sign", "--endpoints", n2, "--key-id", hk, "--message", "aGVsbG8=",
		"--signing-algorithm", "ECDSA_SHA_256", "--dry-run")
	kmsctlFails(t, "KMSInvalidMacException", "verify-mac", "--endpoints", n1, "--key-id", hk, "--message", "aGVsbG8h",
		"--mac-algorithm", "HMAC_SHA_256", "--mac", strings.TrimSpace(mac))

	sym := strings.TrimSpace(kmsctl(t, "create-key", "--endpoints", n1, "--query", "KeyMetadata.KeyId", "--output", "text"))
	kmsctlFails(t, "DryRunOperationException", "generate-data-key-pair", "--endpoints", n2, "--key-id", sym, "--key-pair-spec", "ECC_NIST_P256", "--dry-run")
	kmsctlFails(t, "DryRunOperationException", "generate-data-key-pair-without-plaintext", "--endpoints", n3, "--key-id", sym,
		"--key-pair-spec", "RSA_2048", "--dry-run")
	kmsctlFails(t, "InvalidKeyUsageException", "generate-data-key-pair", "--endpoints", n1, "--key-id", hk, "--key-pair-spec", "ECC_NIST_P256", "--dry-run")
	pair := decodeJSON(t, kmsctl(t, "generate-data-key-pair", "--endpoints", n2, "--key-id", sym, "--key-pair-spec", "ECC_NIST_P256"))
	priv := b64(pair["PrivateKeyPlaintext"].(string))
	blob := pair["PrivateKeyCiphertextBlob"].(string)
	dec := b64(kmsctl(t, "decrypt", "--endpoints", n3, "--ciphertext-blob", blob, "--query", "Plaintext", "--output", "text"))
	if string(dec) != string(priv) || pair["KeyPairSpec"] != "ECC_NIST_P256" {
		t.Fatal("the private key blob does not decrypt to the private key")
	}
	np := decodeJSON(t, kmsctl(t, "generate-data-key-pair-without-plaintext", "--endpoints", n1, "--key-id", sym, "--key-pair-spec", "RSA_2048"))
	if _, has := np["PrivateKeyPlaintext"]; has || np["PublicKey"] == "" || np["PrivateKeyCiphertextBlob"] == "" {
		t.Fatalf("generate-data-key-pair-without-plaintext output: %v", np)
	}
}
