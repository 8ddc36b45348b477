package awsapi_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestSDKAsymmetricAndHMAC drives the asymmetric and HMAC operations with
// the AWS SDK for Go, in AWS's shapes: keys made on one node, used on another.
func TestSDKAsymmetricAndHMAC(t *testing.T) {
	ac := newAWSCluster(t)
	f := ac.follower(t)
	k, other := ac.dev(f), ac.dev((f+1)%3)
	ctx := ctxT(t)
	msg := []byte("release v1.2.3")

	// ECC signing key: Sign on one node, Verify on another, and the
	// signature checks against GetPublicKey's DER.
	ecc := ok[*kms.CreateKeyOutput](t, "CreateKey ECC")(k.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata
	if ecc.KeySpec != types.KeySpecEccNistP256 || ecc.KeyUsage != types.KeyUsageTypeSignVerify ||
		len(ecc.SigningAlgorithms) != 1 || ecc.SigningAlgorithms[0] != types.SigningAlgorithmSpecEcdsaSha256 || len(ecc.EncryptionAlgorithms) != 0 {
		t.Fatalf("ECC metadata: %+v", ecc)
	}
	sig := ok[*kms.SignOutput](t, "Sign")(k.Sign(ctx, &kms.SignInput{KeyId: ecc.KeyId, Message: msg,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
	if sig.SigningAlgorithm != types.SigningAlgorithmSpecEcdsaSha256 || aws.ToString(sig.KeyId) != aws.ToString(ecc.Arn) {
		t.Fatalf("Sign: %+v", sig)
	}
	v := ok[*kms.VerifyOutput](t, "Verify")(other.Verify(ctx, &kms.VerifyInput{KeyId: ecc.KeyId, Message: msg,
		Signature: sig.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
	if !v.SignatureValid {
		t.Fatal("SignatureValid false")
	}
	_, err := other.Verify(ctx, &kms.VerifyInput{KeyId: ecc.KeyId, Message: []byte("release v6.6.6"),
		Signature: sig.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantType[*types.KMSInvalidSignatureException](t, "Verify another message", err)
	pk := ok[*kms.GetPublicKeyOutput](t, "GetPublicKey")(other.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: ecc.KeyId}))
	if pk.KeySpec != types.KeySpecEccNistP256 || pk.KeyUsage != types.KeyUsageTypeSignVerify || len(pk.SigningAlgorithms) != 1 {
		t.Fatalf("GetPublicKey: %+v", pk)
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig.Signature) {
		t.Fatal("the signature does not verify with the public key")
	}
	_, err = k.Encrypt(ctx, &kms.EncryptInput{KeyId: ecc.KeyId, Plaintext: msg})
	wantType[*types.InvalidKeyUsageException](t, "Encrypt with a signing key", err)
	_, err = k.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: ecc.KeyId})
	wantType[*types.UnsupportedOperationException](t, "EnableKeyRotation of an ECC key", err)

	// RSA encryption key: an SDK user's own RSA-OAEP ciphertext decrypts.
	rsaKey := ok[*kms.CreateKeyOutput](t, "CreateKey RSA")(k.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecRsa3072, KeyUsage: types.KeyUsageTypeEncryptDecrypt})).KeyMetadata
	rpk := ok[*kms.GetPublicKeyOutput](t, "GetPublicKey RSA")(k.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: rsaKey.KeyId}))
	if len(rpk.EncryptionAlgorithms) != 2 {
		t.Fatalf("RSA encryption algorithms %v", rpk.EncryptionAlgorithms)
	}
	rpub, err := x509.ParsePKIXPublicKey(rpk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := rsa.EncryptOAEP(crypto.SHA256.New(), rand.Reader, rpub.(*rsa.PublicKey), []byte("pin 1234"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := ok[*kms.DecryptOutput](t, "Decrypt RSA")(other.Decrypt(ctx, &kms.DecryptInput{KeyId: rsaKey.KeyId, CiphertextBlob: ct,
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256}))
	if string(dec.Plaintext) != "pin 1234" || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecRsaesOaepSha256 {
		t.Fatalf("Decrypt RSA: %q %v", dec.Plaintext, dec.EncryptionAlgorithm)
	}

	// HMAC key.
	hk := ok[*kms.CreateKeyOutput](t, "CreateKey HMAC")(k.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecHmac384, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})).KeyMetadata
	if len(hk.MacAlgorithms) != 1 || hk.MacAlgorithms[0] != types.MacAlgorithmSpecHmacSha384 {
		t.Fatalf("HMAC metadata: %+v", hk)
	}
	mac := ok[*kms.GenerateMacOutput](t, "GenerateMac")(k.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: hk.KeyId, Message: msg,
		MacAlgorithm: types.MacAlgorithmSpecHmacSha384}))
	if len(mac.Mac) != 48 {
		t.Fatalf("MAC of %d bytes", len(mac.Mac))
	}
	vm := ok[*kms.VerifyMacOutput](t, "VerifyMac")(other.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: hk.KeyId, Message: msg,
		Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha384}))
	if !vm.MacValid {
		t.Fatal("MacValid false")
	}
	_, err = other.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: hk.KeyId, Message: []byte("x"), Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha384})
	wantType[*types.KMSInvalidMacException](t, "VerifyMac of another message", err)

	// Data key pairs under a symmetric key.
	sym := ok[*kms.CreateKeyOutput](t, "CreateKey")(k.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata
	pair := ok[*kms.GenerateDataKeyPairOutput](t, "GenerateDataKeyPair")(k.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{
		KeyId: sym.KeyId, KeyPairSpec: types.DataKeyPairSpecRsa2048}))
	if pair.KeyPairSpec != types.DataKeyPairSpecRsa2048 || len(pair.PublicKey) == 0 {
		t.Fatalf("GenerateDataKeyPair: %+v", pair)
	}
	priv := ok[*kms.DecryptOutput](t, "Decrypt private key")(other.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: pair.PrivateKeyCiphertextBlob}))
	if !bytes.Equal(priv.Plaintext, pair.PrivateKeyPlaintext) {
		t.Fatal("the private key blob does not decrypt to the private key")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(priv.Plaintext)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(parsed.(*rsa.PrivateKey).Public())
	if !bytes.Equal(pubDER, pair.PublicKey) {
		t.Fatal("the public half does not match the private half")
	}
	npair := ok[*kms.GenerateDataKeyPairWithoutPlaintextOutput](t, "GenerateDataKeyPairWithoutPlaintext")(k.GenerateDataKeyPairWithoutPlaintext(ctx,
		&kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: sym.KeyId, KeyPairSpec: types.DataKeyPairSpecEccNistP521}))
	if len(npair.PrivateKeyCiphertextBlob) == 0 || len(npair.PublicKey) == 0 {
		t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %+v", npair)
	}
}
