package awsapi_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestSDKSigningAndMACs drives the asymmetric and HMAC operations with the
// AWS SDK: Sign/Verify checked with the public key outside the cluster,
// GenerateMac/VerifyMac, and data key pairs.
func TestSDKSigningAndMACs(t *testing.T) {
	ac := newAWSCluster(t)
	f := ac.follower(t)
	k, other := ac.dev(f), ac.dev((f+1)%3)
	ctx := ctxT(t)

	sk := ok[*kms.CreateKeyOutput](t, "CreateKey ECC")(k.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})).KeyMetadata
	if len(sk.SigningAlgorithms) == 0 || sk.SigningAlgorithms[0] != types.SigningAlgorithmSpecEcdsaSha256 {
		t.Fatalf("signing key metadata: %+v", sk)
	}
	msg := []byte("release v1.2.3")
	sig := ok[*kms.SignOutput](t, "Sign")(other.Sign(ctx, &kms.SignInput{KeyId: sk.KeyId, Message: msg,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
	pub := ok[*kms.GetPublicKeyOutput](t, "GetPublicKey")(k.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sk.KeyId}))
	pk, err := x509.ParsePKIXPublicKey(pub.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), sum[:], sig.Signature) {
		t.Fatal("the signature does not verify with the public key")
	}
	v := ok[*kms.VerifyOutput](t, "Verify")(k.Verify(ctx, &kms.VerifyInput{KeyId: sk.KeyId, Message: msg, Signature: sig.Signature,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}))
	if !v.SignatureValid {
		t.Fatal("Verify: not valid")
	}
	_, err = k.Verify(ctx, &kms.VerifyInput{KeyId: sk.KeyId, Message: []byte("other"), Signature: sig.Signature,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantType[*types.KMSInvalidSignatureException](t, "Verify of another message", err)
	_, err = k.Encrypt(ctx, &kms.EncryptInput{KeyId: sk.KeyId, Plaintext: []byte("x")})
	wantType[*types.InvalidKeyUsageException](t, "Encrypt with a signing key", err)

	mk := ok[*kms.CreateKeyOutput](t, "CreateKey HMAC")(k.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})).KeyMetadata
	mac := ok[*kms.GenerateMacOutput](t, "GenerateMac")(other.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: mk.KeyId, Message: msg,
		MacAlgorithm: types.MacAlgorithmSpecHmacSha256}))
	vm := ok[*kms.VerifyMacOutput](t, "VerifyMac")(k.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: mk.KeyId, Message: msg, Mac: mac.Mac,
		MacAlgorithm: types.MacAlgorithmSpecHmacSha256}))
	if !vm.MacValid {
		t.Fatal("VerifyMac: not valid")
	}
	_, err = k.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: mk.KeyId, Message: []byte("other"), Mac: mac.Mac,
		MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	wantType[*types.KMSInvalidMacException](t, "VerifyMac of another message", err)

	sym := ok[*kms.CreateKeyOutput](t, "CreateKey")(k.CreateKey(ctx, &kms.CreateKeyInput{})).KeyMetadata.KeyId
	pair := ok[*kms.GenerateDataKeyPairOutput](t, "GenerateDataKeyPair")(other.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{
		KeyId: sym, KeyPairSpec: types.DataKeyPairSpecEccNistP256}))
	if len(pair.PrivateKeyPlaintext) == 0 || len(pair.PublicKey) == 0 || len(pair.PrivateKeyCiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyPair: %+v", pair)
	}
	back := ok[*kms.DecryptOutput](t, "Decrypt private key")(k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: pair.PrivateKeyCiphertextBlob}))
	if string(back.Plaintext) != string(pair.PrivateKeyPlaintext) {
		t.Fatal("the private key does not decrypt to itself")
	}
	np := ok[*kms.GenerateDataKeyPairWithoutPlaintextOutput](t, "GenerateDataKeyPairWithoutPlaintext")(k.GenerateDataKeyPairWithoutPlaintext(ctx,
		&kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: aws.String(*sym), KeyPairSpec: types.DataKeyPairSpecRsa2048}))
	if len(np.PublicKey) == 0 || len(np.PrivateKeyCiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %+v", np)
	}

	// GenerateRandom and ListKeyPolicies.
	rnd := ok[*kms.GenerateRandomOutput](t, "GenerateRandom")(k.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(24)}))
	if len(rnd.Plaintext) != 24 {
		t.Fatalf("GenerateRandom: %d bytes", len(rnd.Plaintext))
	}
	pols := ok[*kms.ListKeyPoliciesOutput](t, "ListKeyPolicies")(other.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: sym}))
	if len(pols.PolicyNames) != 1 || pols.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies: %+v", pols.PolicyNames)
	}
}
