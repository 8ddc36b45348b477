package keycrypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzParseCiphertext: any bytes either parse into a header whose
// decryption fails cleanly, or are refused with ErrInvalidCiphertext; never
// a panic, and never a successful decryption of a blob the fuzzer made up.
func FuzzParseCiphertext(f *testing.F) {
	aead := testAEAD(f)
	good, _ := Encrypt(aead, "k", 1, rand.Reader, []byte("p"), nil)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 255})
	f.Add(bytes.Repeat([]byte{1}, 40))
	f.Fuzz(func(t *testing.T, blob []byte) {
		h, body, err := ParseCiphertext(blob)
		if err != nil {
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("error %v does not wrap ErrInvalidCiphertext", err)
			}
			return
		}
		if h.Version == 0 || h.KeyID == "" {
			t.Fatalf("accepted header %+v", h)
		}
		pt, err := Decrypt(aead, h, body, nil)
		if err == nil && !bytes.Equal(blob, good) {
			t.Fatalf("forged blob decrypted to %x", pt)
		}
	})
}

// FuzzCanonicalContext: parsing never panics, and whatever parses
// re-encodes to the same bytes (one encoding per context).
func FuzzCanonicalContext(f *testing.F) {
	f.Add(CanonicalContext(map[string]string{"a": "b", "c": "d"}))
	f.Add([]byte{1, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseCanonicalContext(b)
		if err != nil {
			return
		}
		if got := CanonicalContext(m); !bytes.Equal(got, b) && !(len(b) == 0 && got == nil) {
			t.Fatalf("re-encoding %x gave %x", b, got)
		}
	})
}
