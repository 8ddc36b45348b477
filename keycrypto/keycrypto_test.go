package keycrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

func testRoot(t testing.TB) *RootKey {
	t.Helper()
	r, err := GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testMaterial is the version key of the tests' ciphertexts.
var testMaterial = bytes.Repeat([]byte{7}, 32)

func testVK(t testing.TB, keyID string, version uint32) *VersionKey {
	t.Helper()
	k, err := NewVersionKey(keyID, version, testMaterial)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// encryptV1 writes a format 1 blob as raftkms did before format 2, so the
// tests can check that such blobs keep opening.
func encryptV1(t testing.TB, keyID string, version uint32, random io.Reader, plaintext, ec []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(testMaterial)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	hdrLen := 2 + len(keyID) + 4
	out := make([]byte, hdrLen+nonceSize)
	out[0] = CiphertextFormatV1
	out[1] = byte(len(keyID))
	copy(out[2:], keyID)
	binary.BigEndian.PutUint32(out[2+len(keyID):], version)
	if _, err := io.ReadFull(random, out[hdrLen:]); err != nil {
		t.Fatal(err)
	}
	aad := append(append([]byte(nil), out[:hdrLen]...), ec...)
	return aead.Seal(out, out[hdrLen:], plaintext, aad)
}

func TestRootKeyEncodeParse(t *testing.T) {
	r := testRoot(t)
	enc := EncodeRootKey(r)
	back, err := ParseRootKey(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.raw != r.raw {
		t.Fatal("root key did not survive encode/parse")
	}
	raw, err := ParseRootKey(r.raw[:])
	if err != nil || raw.raw != r.raw {
		t.Fatalf("raw 32-byte file: %v", err)
	}
	for _, bad := range []string{"", "short", "!!!!", string(enc[:10])} {
		if _, err := ParseRootKey([]byte(bad)); !errors.Is(err, ErrInvalidRootKey) {
			t.Errorf("ParseRootKey(%q) = %v, want ErrInvalidRootKey", bad, err)
		}
	}
}

func TestSealBindsKeyAndVersion(t *testing.T) {
	r := testRoot(t)
	material := bytes.Repeat([]byte{0x42}, 32)
	sealed, err := r.Seal("key-a", 3, material)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, material) {
		t.Fatal("sealed bytes contain the material")
	}
	got, err := r.Open("key-a", 3, sealed)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("Open = %x, %v", got, err)
	}
	other := testRoot(t)
	cases := []struct {
		name string
		open func() ([]byte, error)
	}{
		{"other key", func() ([]byte, error) { return r.Open("key-b", 3, sealed) }},
		{"other version", func() ([]byte, error) { return r.Open("key-a", 4, sealed) }},
		{"other root key", func() ([]byte, error) { return other.Open("key-a", 3, sealed) }},
		{"as a wrapping key", func() ([]byte, error) { return r.OpenPrivateKey("key-a", "", sealed) }},
		{"truncated", func() ([]byte, error) { return r.Open("key-a", 3, sealed[:len(sealed)-1]) }},
		{"empty", func() ([]byte, error) { return r.Open("key-a", 3, nil) }},
	}
	for _, c := range cases {
		if _, err := c.open(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: err = %v, want ErrSealed", c.name, err)
		}
	}
	flipped := append([]byte(nil), sealed...)
	flipped[len(flipped)/2] ^= 1
	if _, err := r.Open("key-a", 3, flipped); !errors.Is(err, ErrSealed) {
		t.Errorf("flipped bit: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	r := testRoot(t)
	m := bytes.Repeat([]byte{1}, 32)
	a, b := r.Fingerprint("k", m), r.Fingerprint("k", m)
	if !bytes.Equal(a, b) {
		t.Fatal("fingerprint is not deterministic")
	}
	if bytes.Equal(a, r.Fingerprint("k2", m)) {
		t.Fatal("fingerprint does not bind the key ID")
	}
	if bytes.Equal(a, testRoot(t).Fingerprint("k", m)) {
		t.Fatal("fingerprint does not depend on the root key")
	}
	m2 := bytes.Repeat([]byte{2}, 32)
	if bytes.Equal(a, r.Fingerprint("k", m2)) {
		t.Fatal("different material, same fingerprint")
	}
}

func TestCiphertextRoundTrip(t *testing.T) {
	const id = "1234abcd-12ab-34cd-56ef-1234567890ab"
	k := testVK(t, id, 7)
	ec := CanonicalContext(map[string]string{"purpose": "test", "app": "x"})
	for _, pt := range [][]byte{{0}, []byte("hello"), bytes.Repeat([]byte{9}, 4096)} {
		for _, format := range []byte{CiphertextFormatV1, CiphertextFormatV2} {
			var blob []byte
			if format == CiphertextFormatV1 {
				blob = encryptV1(t, id, 7, rand.Reader, pt, ec)
			} else {
				var err error
				if blob, err = k.Encrypt(rand.Reader, pt, ec); err != nil {
					t.Fatal(err)
				}
			}
			h, body, err := ParseCiphertext(blob)
			if err != nil {
				t.Fatal(err)
			}
			if h.KeyID != id || h.Version != 7 || h.Format != format {
				t.Fatalf("header = %+v, want format %d", h, format)
			}
			got, err := k.Decrypt(h, body, ec)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("format %d: Decrypt: %v", format, err)
			}
		}
	}
}

func TestCiphertextTamper(t *testing.T) {
	k := testVK(t, "key", 2)
	ec := CanonicalContext(map[string]string{"a": "b"})
	v2, err := k.Encrypt(rand.Reader, []byte("secret"), ec)
	if err != nil {
		t.Fatal(err)
	}
	v1 := encryptV1(t, "key", 2, rand.Reader, []byte("secret"), ec)
	t.Run("format1", func(t *testing.T) { tamper(t, k, v1, ec) })
	t.Run("format2", func(t *testing.T) { tamper(t, k, v2, ec) })
	b := append([]byte(nil), v2...)
	b[0] = 0x03
	if _, _, err := ParseCiphertext(b); !errors.Is(err, ErrUnsupportedFormat) || !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("format 3: %v", err)
	}
}

// tamper checks that no flipped bit, truncation or wrong context opens.
func tamper(t *testing.T, k *VersionKey, blob, ec []byte) {
	open := func(b, ec []byte) error {
		h, body, err := ParseCiphertext(b)
		if err != nil {
			return err
		}
		_, err = k.Decrypt(h, body, ec)
		return err
	}
	if err := open(blob, ec); err != nil {
		t.Fatalf("untouched blob: %v", err)
	}
	// Every flipped bit is refused (or names another key/version, which the
	// API resolves and then fails to open).
	for i := range len(blob) * 8 {
		b := append([]byte(nil), blob...)
		b[i/8] ^= 1 << (i % 8)
		if err := open(b, ec); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("bit %d flipped: err = %v", i, err)
		}
	}
	for n := range len(blob) {
		if err := open(blob[:n], ec); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("truncated to %d: err = %v", n, err)
		}
	}
	for _, wrong := range []map[string]string{nil, {"a": "c"}, {"a": "b", "x": "y"}, {"b": "a"}} {
		if err := open(blob, CanonicalContext(wrong)); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("context %v: err = %v", wrong, err)
		}
	}
	// The same bytes under another key version, or other material, do not open.
	h, body, _ := ParseCiphertext(blob)
	other, err := NewVersionKey("key", 2, bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for name, vk := range map[string]*VersionKey{"other material": other, "other version": testVK(t, "key", 3), "other key": testVK(t, "kez", 2)} {
		if _, err := vk.Decrypt(h, body, ec); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("%s: err = %v", name, err)
		}
	}
	if _, err := k.Decrypt(Header{}, body, ec); !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("unparsed header: %v", err)
	}
}

func TestCanonicalContext(t *testing.T) {
	if CanonicalContext(nil) != nil || CanonicalContext(map[string]string{}) != nil {
		t.Fatal("empty context must encode as nil")
	}
	// Length prefixes keep boundary-shifted contexts apart.
	a := CanonicalContext(map[string]string{"ab": "c"})
	b := CanonicalContext(map[string]string{"a": "bc"})
	if bytes.Equal(a, b) {
		t.Fatal("different contexts share an encoding")
	}
	m := map[string]string{"z": "1", "a": "2", "": "", "m": "=,"}
	back, err := ParseCanonicalContext(CanonicalContext(m))
	if err != nil || len(back) != len(m) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for k, v := range m {
		if back[k] != v {
			t.Fatalf("round trip lost %q", k)
		}
	}
}

func TestDataKeyLength(t *testing.T) {
	cases := []struct {
		spec string
		n    int
		want int
		ok   bool
	}{
		{"AES_128", 0, 16, true}, {"AES_256", 0, 32, true}, {"", 1, 1, true}, {"", 1024, 1024, true},
		{"", 0, 0, false}, {"", 1025, 0, false}, {"", -1, 0, false}, {"AES_256", 32, 0, false}, {"RSA", 0, 0, false},
	}
	for _, c := range cases {
		got, err := DataKeyLength(c.spec, c.n)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("DataKeyLength(%q, %d) = %d, %v", c.spec, c.n, got, err)
		}
	}
}

func TestCache(t *testing.T) {
	c := NewCache(2)
	opens := 0
	open := func() ([]byte, error) { opens++; return bytes.Repeat([]byte{3}, 32), nil }
	a1, err := c.Get("k1", 1, open)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := c.Get("k1", 1, open)
	if a1 != a2 || opens != 1 {
		t.Fatalf("second Get opened again (opens=%d)", opens)
	}
	c.Get("k1", 2, open)
	c.Get("k2", 1, open)
	if c.Len() != 3 {
		t.Fatalf("Len = %d", c.Len())
	}
	c.Get("k3", 1, open) // evicts one key
	if c.Len() > 3 {
		t.Fatalf("cache not bounded: %d", c.Len())
	}
	c.Forget("k3")
	before := opens
	c.Get("k3", 1, open)
	if opens != before+1 {
		t.Fatal("Forget did not drop the key")
	}
	c.Purge()
	if c.Len() != 0 {
		t.Fatal("Purge left entries")
	}
	if _, err := c.Get("bad", 1, func() ([]byte, error) { return nil, ErrSealed }); !errors.Is(err, ErrSealed) {
		t.Fatalf("open error not returned: %v", err)
	}
	// The material handed to the cache is cleared once used.
	var given []byte
	k, err := c.Get("k4", 2, func() ([]byte, error) { given = bytes.Repeat([]byte{5}, 32); return given, nil })
	if err != nil || k.KeyID() != "k4" || k.Version() != 2 {
		t.Fatalf("Get = %v, %v", k, err)
	}
	if !bytes.Equal(given, make([]byte, 32)) {
		t.Fatal("material not cleared after building the version key")
	}
	if _, err := c.Get("k5", 1, func() ([]byte, error) { return []byte("short"), nil }); err == nil {
		t.Fatal("5-byte material accepted")
	}
}

// RFC 5649 section 6 test vectors.
func TestKWPVectors(t *testing.T) {
	kek, _ := hex.DecodeString("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	cases := []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	}
	for _, c := range cases {
		key, _ := hex.DecodeString(c.key)
		want, _ := hex.DecodeString(c.wrapped)
		got, err := WrapKWP(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("WrapKWP(%s) = %x, %v; want %s", c.key, got, err, c.wrapped)
		}
		back, err := UnwrapKWP(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("UnwrapKWP(%s) = %x, %v", c.wrapped, back, err)
		}
		bad := append([]byte(nil), want...)
		bad[3] ^= 0x10
		if _, err := UnwrapKWP(kek, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("tampered wrap accepted: %v", err)
		}
	}
}

func TestWrapUnwrapMaterial(t *testing.T) {
	_, pub, priv, err := GenerateWrappingKey(rand.Reader, "RSA_2048")
	if err != nil {
		t.Fatal(err)
	}
	material := bytes.Repeat([]byte{0x5a}, 32)
	for _, alg := range []string{WrapRSAESOAEPSHA256, WrapRSAESOAEPSHA1, WrapRSAAESKeyWrapSHA256, WrapRSAAESKeyWrapSHA1} {
		w, err := WrapKeyMaterial(rand.Reader, pub, alg, material)
		if err != nil {
			t.Fatal(alg, err)
		}
		got, err := UnwrapKeyMaterial(priv, alg, w)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("%s: %x, %v", alg, got, err)
		}
		w[len(w)-1] ^= 1
		if _, err := UnwrapKeyMaterial(priv, alg, w); err == nil {
			t.Fatalf("%s: tampered wrap accepted", alg)
		}
	}
	short, _ := WrapKeyMaterial(rand.Reader, pub, WrapRSAESOAEPSHA256, material[:16])
	if _, err := UnwrapKeyMaterial(priv, WrapRSAESOAEPSHA256, short); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("16-byte material accepted: %v", err)
	}
	if _, _, _, err := GenerateWrappingKey(rand.Reader, "RSA_1024"); err == nil {
		t.Fatal("RSA_1024 accepted")
	}
}
