package keycrypto

import (
	"bytes"
	"errors"
	"testing"
)

// constReader is randomness that is not random: every fuzz worker must
// build the same seed blobs, or a seed that "decrypts" in one worker is a
// forgery in another.
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// FuzzParseCiphertext: any bytes either parse into a header whose
// decryption fails cleanly, or are refused with ErrInvalidCiphertext; never
// a panic, and never a successful decryption of a blob the fuzzer made up.
func FuzzParseCiphertext(f *testing.F) {
	k := testVK(f, "k", 1)
	v2, err := k.Encrypt(constReader(0x11), []byte("p"), nil)
	if err != nil {
		f.Fatal(err)
	}
	good := [][]byte{encryptV1(f, "k", 1, constReader(0x22), []byte("p"), nil), v2}
	for _, g := range good {
		f.Add(g)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 255})
	f.Add(bytes.Repeat([]byte{1}, 40))
	f.Add(bytes.Repeat([]byte{2}, 80))
	f.Fuzz(func(t *testing.T, blob []byte) {
		h, body, err := ParseCiphertext(blob)
		if err != nil {
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("error %v does not wrap ErrInvalidCiphertext", err)
			}
			return
		}
		if h.Version == 0 || h.KeyID == "" || (h.Format != CiphertextFormatV1 && h.Format != CiphertextFormatV2) {
			t.Fatalf("accepted header %+v", h)
		}
		pt, err := k.Decrypt(h, body, nil)
		if err == nil && !bytes.Equal(blob, good[0]) && !bytes.Equal(blob, good[1]) {
			t.Fatalf("forged blob decrypted to %x", pt)
		}
		if err != nil && !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("error %v does not wrap ErrInvalidCiphertext", err)
		}
	})
}

// FuzzCiphertextV2: whatever the plaintext and context, a format 2 blob
// opens with its context and not with another, and a blob with any byte
// changed or cut short does not open.
func FuzzCiphertextV2(f *testing.F) {
	k := testVK(f, "1234abcd-12ab-34cd-56ef-1234567890ab", 3)
	f.Add([]byte("hello"), "app", "x", byte(0x33), uint16(0), byte(1), uint16(0))
	f.Add([]byte{}, "", "", byte(0), uint16(44), byte(0x80), uint16(10))
	f.Add(bytes.Repeat([]byte{0xff}, 300), "a", "", byte(0xfe), uint16(500), byte(0), uint16(90))
	f.Fuzz(func(t *testing.T, pt []byte, ecKey, ecVal string, saltByte byte, pos uint16, flip byte, cut uint16) {
		ec := CanonicalContext(map[string]string{ecKey: ecVal})
		blob, err := k.Encrypt(constReader(saltByte), pt, ec)
		if err != nil {
			t.Fatal(err)
		}
		open := func(b, ec []byte) ([]byte, error) {
			h, body, err := ParseCiphertext(b)
			if err != nil {
				return nil, err
			}
			return k.Decrypt(h, body, ec)
		}
		got, err := open(blob, ec)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %x, %v", got, err)
		}
		if _, err := open(blob, CanonicalContext(map[string]string{ecKey: ecVal + "!"})); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("other context: %v", err)
		}
		if flip != 0 {
			b := append([]byte(nil), blob...)
			b[int(pos)%len(b)] ^= flip
			if _, err := open(b, ec); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("byte %d xor %02x: %v", int(pos)%len(b), flip, err)
			}
		}
		if _, err := open(blob[:int(cut)%len(blob)], ec); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("cut to %d bytes: %v", int(cut)%len(blob), err)
		}
	})
}

// FuzzSealed: any bytes opened as sealed material are refused with
// ErrSealed (never a panic) unless they are the one blob really sealed for
// that key version; SealedRootKeyID answers only for well-formed format 2
// blobs; and any material seals and opens back, bound to its key version.
func FuzzSealed(f *testing.F) {
	r := countingRoot(f)
	r.random = constReader(0x44)
	good, err := r.Seal("key", 1, bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, "key", uint32(1))
	f.Add([]byte{}, "", uint32(0))
	f.Add([]byte{1}, "key", uint32(1))
	f.Add(append([]byte{2}, make([]byte, 40)...), "k", uint32(7))
	f.Add(append([]byte{1}, make([]byte, 40)...), "k", uint32(7))
	f.Fuzz(func(t *testing.T, sealed []byte, keyID string, version uint32) {
		pt, err := r.Open(keyID, version, sealed)
		switch {
		case err == nil && !(bytes.Equal(sealed, good) && keyID == "key" && version == 1):
			t.Fatalf("made-up blob opened to %x", pt)
		case err != nil && !errors.Is(err, ErrSealed):
			t.Fatalf("error %v does not wrap ErrSealed", err)
		}
		if _, err := r.OpenPrivateKey(keyID, "", sealed); err == nil {
			t.Fatal("opened as a wrapping private key")
		}
		id, ok := SealedRootKeyID(sealed)
		if ok != (len(sealed) >= sealV2MinLen && sealed[0] == sealFormatV2) || (ok && len(id) != 2*rootKeyIDLen) {
			t.Fatalf("SealedRootKeyID(%x) = %q, %v", sealed, id, ok)
		}
		again, err := r.Seal(keyID, version, sealed)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := r.Open(keyID, version, again); err != nil || !bytes.Equal(back, sealed) {
			t.Fatalf("seal/open round trip: %v", err)
		}
		if _, err := r.Open(keyID, version+1, again); !errors.Is(err, ErrSealed) {
			t.Fatalf("opened under another version: %v", err)
		}
	})
}

// FuzzCanonicalContext: parsing never panics, and whatever parses
// re-encodes to the same bytes (one encoding per context).
func FuzzCanonicalContext(f *testing.F) {
	f.Add(CanonicalContext(map[string]string{"a": "b", "c": "d"}))
	f.Add([]byte{1, 'a'})
	f.Add([]byte{0x81, 0x00, 'a', 0x00})
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
