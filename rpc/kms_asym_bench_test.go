package rpc

import (
	"context"
	"testing"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// BenchmarkSignAndMACHandlers puts Sign (RSA_2048 with RSASSA_PSS_SHA_256,
// ECC_NIST_P256 with ECDSA_SHA_256) and GenerateMac (HMAC_256) beside
// Encrypt, all of a 1 KiB message through the handler with the read
// barrier, on one node, in one run:
//
//	go test ./rpc -run '^$' -bench SignAndMAC -benchtime 2s
func BenchmarkSignAndMACHandlers(b *testing.B) {
	n := startBenchNode(b)
	ctx := context.Background()
	create := func(spec, usage string) string {
		ck, err := n.svc.CreateKey(withRequestID(ctx, newRequestID()), &kmsv1.CreateKeyRequest{KeySpec: spec, KeyUsage: usage})
		if err != nil {
			b.Fatal(err)
		}
		return ck.KeyMetadata.KeyId
	}
	rsaKey, eccKey, macKey := create("RSA_2048", "SIGN_VERIFY"), create("ECC_NIST_P256", "SIGN_VERIFY"), create("HMAC_256", "GENERATE_VERIFY_MAC")
	msg := make([]byte, benchPayload)
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"encrypt", func() error {
			_, err := n.svc.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: msg})
			return err
		}},
		{"sign-rsa-2048-pss", func() error {
			_, err := n.svc.Sign(ctx, &kmsv1.SignRequest{KeyId: rsaKey, Message: msg, SigningAlgorithm: "RSASSA_PSS_SHA_256"})
			return err
		}},
		{"sign-ecc-p256", func() error {
			_, err := n.svc.Sign(ctx, &kmsv1.SignRequest{KeyId: eccKey, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}},
		{"generate-mac-256", func() error {
			_, err := n.svc.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: macKey, Message: msg, MacAlgorithm: "HMAC_SHA_256"})
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
