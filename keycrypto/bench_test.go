package keycrypto

import (
	"crypto/rand"
	"testing"
)

func BenchmarkEncrypt1KiB(b *testing.B) {
	aead := testAEAD(b)
	pt := make([]byte, 1024)
	ec := CanonicalContext(map[string]string{"app": "bench"})
	b.ReportAllocs()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := Encrypt(aead, "1234abcd-12ab-34cd-56ef-1234567890ab", 1, rand.Reader, pt, ec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDecrypt1KiB(b *testing.B) {
	aead := testAEAD(b)
	blob, _ := Encrypt(aead, "1234abcd-12ab-34cd-56ef-1234567890ab", 1, rand.Reader, make([]byte, 1024), nil)
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		h, body, err := ParseCiphertext(blob)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decrypt(aead, h, body, nil); err != nil {
			b.Fatal(err)
		}
	}
}
