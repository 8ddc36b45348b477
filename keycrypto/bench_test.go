package keycrypto

import (
	"crypto/rand"
	"fmt"
	"testing"
)

const benchKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"

// BenchmarkEncrypt compares format 1 (AES-GCM straight under the version
// key) with format 2 (a message key derived per message), for a data key
// (32 bytes) and a 1 KiB plaintext.
func BenchmarkEncrypt(b *testing.B) {
	k := testVK(b, benchKeyID, 1)
	ec := CanonicalContext(map[string]string{"app": "bench"})
	for _, size := range []int{32, 1024} {
		pt := make([]byte, size)
		b.Run(fmt.Sprintf("v1/%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				encryptV1Bench(k, pt, ec)
			}
		})
		b.Run(fmt.Sprintf("v2/%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := k.Encrypt(rand.Reader, pt, ec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// encryptV1Bench is format 1's encryption as Encrypt did it before format 2.
func encryptV1Bench(k *VersionKey, plaintext, ec []byte) []byte {
	hdrLen := len(k.hdr)
	out := make([]byte, hdrLen+nonceSize, hdrLen+nonceSize+len(plaintext)+tagSize)
	copy(out, k.hdr)
	out[0] = CiphertextFormatV1
	rand.Read(out[hdrLen:])
	return k.v1.Seal(out, out[hdrLen:], plaintext, withContext(out[:hdrLen], ec))
}

// BenchmarkParseDecrypt opens blobs of both formats.
func BenchmarkParseDecrypt(b *testing.B) {
	k := testVK(b, benchKeyID, 1)
	for _, size := range []int{32, 1024} {
		pt := make([]byte, size)
		v2, err := k.Encrypt(rand.Reader, pt, nil)
		if err != nil {
			b.Fatal(err)
		}
		for name, blob := range map[string][]byte{"v1": encryptV1(b, benchKeyID, 1, rand.Reader, pt, nil), "v2": v2} {
			b.Run(fmt.Sprintf("%s/%dB", name, size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					h, body, err := ParseCiphertext(blob)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := k.Decrypt(h, body, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMessageKey is format 2's per-message derivation alone: one
// HMAC-SHA-256 and an AES-GCM key setup.
func BenchmarkMessageKey(b *testing.B) {
	k := testVK(b, benchKeyID, 1)
	salt := make([]byte, saltSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.messageAEAD(salt); err != nil {
			b.Fatal(err)
		}
	}
}
