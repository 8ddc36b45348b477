package keycrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

// countingRoot is the root key 00 01 02 … 1f, whose known answers below were
// computed once, outside Go, from the definitions (HMAC-SHA-256 under the
// root key over the domain strings):
//
//	python3 -c 'import hmac,hashlib; k=bytes(range(32)); print(hmac.new(k,b"raftkms/root-key-id/v1",hashlib.sha256).hexdigest()[:16])'
func countingRoot(t testing.TB) *RootKey {
	t.Helper()
	raw := make([]byte, RootKeySize)
	for i := range raw {
		raw[i] = byte(i)
	}
	r, err := NewRootKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRootKeyIDAndCheckValue(t *testing.T) {
	r := countingRoot(t)
	if got, want := r.ID(), "a64ab48586bdbb46"; got != want {
		t.Fatalf("ID = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(r.CheckValue()), "0cd7d6a8d013099e00194edca2355029"; got != want {
		t.Fatalf("CheckValue = %s, want %s", got, want)
	}
	// The same from the definition, through crypto/hmac.
	m := hmac.New(sha256.New, r.raw[:])
	m.Write([]byte("raftkms/root-key-check/v1"))
	if !bytes.Equal(r.CheckValue(), m.Sum(nil)[:CheckValueSize]) {
		t.Fatal("CheckValue is not HMAC-SHA-256 over its domain")
	}
	if r.ID() == hex.EncodeToString(r.CheckValue()[:rootKeyIDLen]) {
		t.Fatal("ID and check value share their domain")
	}
	plain := sha256.Sum256(r.raw[:])
	if strings.Contains(hex.EncodeToString(plain[:]), r.ID()) || bytes.Contains(plain[:], r.CheckValue()) {
		t.Fatal("ID or check value is a plain hash of the key")
	}
	again := countingRoot(t)
	if again.ID() != r.ID() || !bytes.Equal(again.CheckValue(), r.CheckValue()) || !r.MatchesCheckValue(again.CheckValue()) {
		t.Fatal("ID or check value not stable for one key")
	}
	other := testRoot(t)
	if other.ID() == r.ID() || bytes.Equal(other.CheckValue(), r.CheckValue()) || r.MatchesCheckValue(other.CheckValue()) {
		t.Fatal("two root keys share an ID or check value")
	}
	if r.MatchesCheckValue(nil) || r.MatchesCheckValue(r.CheckValue()[:8]) {
		t.Fatal("short check value matches")
	}
	cv := r.CheckValue()
	cv[0] ^= 1
	if bytes.Equal(cv, r.CheckValue()) {
		t.Fatal("CheckValue hands out its own array")
	}
}

func TestSealWrongRootKey(t *testing.T) {
	a, b := countingRoot(t), testRoot(t)
	sealed, err := a.Seal("key-a", 1, bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if sealed[0] != sealFormatV2 {
		t.Fatalf("Seal wrote format %d", sealed[0])
	}
	if id, ok := SealedRootKeyID(sealed); !ok || id != a.ID() {
		t.Fatalf("SealedRootKeyID = %q, %v; want %s", id, ok, a.ID())
	}
	priv, err := a.SealPrivateKey("key-a", "tok", []byte("der"))
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"material":    func() ([]byte, error) { return b.Open("key-a", 1, sealed) },
		"private key": func() ([]byte, error) { return b.OpenPrivateKey("key-a", "tok", priv) },
	} {
		_, err := open()
		if !errors.Is(err, ErrWrongRootKey) || !errors.Is(err, ErrSealed) {
			t.Fatalf("%s: err = %v, want ErrWrongRootKey", name, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, a.ID()) || !strings.Contains(msg, b.ID()) {
			t.Fatalf("%s: %q does not name both root-key IDs", name, msg)
		}
		for _, secret := range []*RootKey{a, b} {
			if strings.Contains(msg, hex.EncodeToString(secret.raw[:8])) || strings.Contains(msg, base64.StdEncoding.EncodeToString(secret.raw[:])[:8]) {
				t.Fatalf("%s: %q shows key bytes", name, msg)
			}
		}
	}
	// A blob that names this root key but does not open is ErrSealed alone.
	bad := append([]byte(nil), sealed...)
	bad[len(bad)-1] ^= 1
	if _, err := a.Open("key-a", 1, bad); !errors.Is(err, ErrSealed) || errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("tampered blob: %v", err)
	}
}

// Format 1 blobs written by raftkms before root-key IDs (under
// countingRoot, with nonce bytes a5) still open: old logs and snapshots
// replay.
func TestSealFormat1StillOpens(t *testing.T) {
	r := countingRoot(t)
	material, _ := hex.DecodeString("01a5a5a5a5a5a5a5a5a5a5a5a56305dee270de6acb6aeee1a0ea613567cf58f515a11303030415c53b6605b1d9c637068e2c29f0355051401aa83d0410")
	got, err := r.Open("key-a", 3, material)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x42}, 32)) {
		t.Fatalf("format 1 material: %x, %v", got, err)
	}
	if _, ok := SealedRootKeyID(material); ok {
		t.Fatal("format 1 blob claims a root-key ID")
	}
	if _, err := r.Open("key-a", 4, material); !errors.Is(err, ErrSealed) {
		t.Fatalf("format 1 under another version: %v", err)
	}
	if _, err := testRoot(t).Open("key-a", 3, material); !errors.Is(err, ErrSealed) {
		t.Fatalf("format 1 under another root key: %v", err)
	}
	priv, _ := hex.DecodeString("01a5a5a5a5a5a5a5a5a5a5a5a54522ee8050e55cec5b66f201926756cd222db89269d8f0efac")
	got, err = r.OpenPrivateKey("key-a", "tok", priv)
	if err != nil || string(got) != "der bytes" {
		t.Fatalf("format 1 private key: %q, %v", got, err)
	}
}

// Every flipped bit and every truncation of a format 2 sealed blob is
// refused with ErrSealed.
func TestSealFormat2Tamper(t *testing.T) {
	r := testRoot(t)
	sealed, err := r.Seal("k", 2, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(sealed) * 8 {
		b := append([]byte(nil), sealed...)
		b[i/8] ^= 1 << (i % 8)
		if _, err := r.Open("k", 2, b); !errors.Is(err, ErrSealed) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
		if i/8 >= 1 && i/8 <= rootKeyIDLen {
			if _, err := r.Open("k", 2, b); !errors.Is(err, ErrWrongRootKey) {
				t.Fatalf("bit %d of the root-key ID flipped: %v", i, err)
			}
		}
	}
	for n := range len(sealed) {
		if _, err := r.Open("k", 2, sealed[:n]); !errors.Is(err, ErrSealed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
		if _, ok := SealedRootKeyID(sealed[:n]); ok && n < sealV2MinLen {
			t.Fatalf("truncated to %d: SealedRootKeyID answered", n)
		}
	}
}

// A format 1 ciphertext written by raftkms before format 2 (version key of
// 07 bytes, nonce bytes 5c) still decrypts.
func TestCiphertextFormat1StillOpens(t *testing.T) {
	blob, _ := hex.DecodeString("012431323334616263642d313261622d333463642d353665662d313233343536373839306162000000075c5c5c5c5c5c5c5c5c5c5c5c4c3bb94d00a59ba60b013242dce943b66746fd4be8")
	h, body, err := ParseCiphertext(blob)
	if err != nil || h.Format != CiphertextFormatV1 {
		t.Fatalf("ParseCiphertext: %+v, %v", h, err)
	}
	k := testVK(t, "1234abcd-12ab-34cd-56ef-1234567890ab", 7)
	pt, err := k.Decrypt(h, body, CanonicalContext(map[string]string{"app": "x"}))
	if err != nil || string(pt) != "hello" {
		t.Fatalf("format 1: %q, %v", pt, err)
	}
	if _, err := k.Decrypt(h, body, nil); !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("format 1 without its context: %v", err)
	}
}

// Format 2's message key is what its comment defines, computed here with
// crypto/hkdf: HKDF-SHA-256-Expand(version key, domain || header || salt).
func TestCiphertextFormat2Definition(t *testing.T) {
	const id = "1234abcd-12ab-34cd-56ef-1234567890ab"
	k := testVK(t, id, 9)
	salt := bytes.Repeat([]byte{0x33}, saltSize)
	ec := CanonicalContext(map[string]string{"app": "x"})
	blob, err := k.Encrypt(bytes.NewReader(salt), []byte("hello"), ec)
	if err != nil {
		t.Fatal(err)
	}
	hdr := append([]byte{CiphertextFormatV2, byte(len(id))}, id...)
	hdr = append(hdr, 0, 0, 0, 9)
	if !bytes.HasPrefix(blob, append(append([]byte(nil), hdr...), salt...)) || len(blob) != len(hdr)+saltSize+5+tagSize {
		t.Fatalf("blob layout: %x", blob)
	}
	mk, err := hkdf.Expand(sha256.New, testMaterial, "raftkms/ciphertext/v2"+string(hdr)+string(salt), 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(mk)
	aead, _ := cipher.NewGCM(block)
	pt, err := aead.Open(nil, make([]byte, nonceSize), blob[len(hdr)+saltSize:], append(hdr, ec...))
	if err != nil || string(pt) != "hello" {
		t.Fatalf("blob does not open under the defined message key: %v", err)
	}
	// Two messages, two salts, two different ciphertexts.
	a, _ := k.Encrypt(rand.Reader, []byte("hello"), ec)
	b, _ := k.Encrypt(rand.Reader, []byte("hello"), ec)
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions gave the same blob")
	}
	if _, err := k.Encrypt(bytes.NewReader(nil), []byte("x"), nil); err == nil {
		t.Fatal("encrypted without randomness")
	}
}

func TestNewVersionKeyRefuses(t *testing.T) {
	cases := []struct {
		id       string
		version  uint32
		material []byte
	}{
		{"", 1, testMaterial},
		{strings.Repeat("k", 256), 1, testMaterial},
		{"k", 0, testMaterial},
		{"k", 1, nil},
		{"k", 1, make([]byte, 31)},
	}
	for _, c := range cases {
		if _, err := NewVersionKey(c.id, c.version, c.material); err == nil {
			t.Errorf("NewVersionKey(%d-byte ID, %d, %d bytes) accepted", len(c.id), c.version, len(c.material))
		}
	}
	if _, err := NewVersionKey(strings.Repeat("k", 255), 1, testMaterial); err != nil {
		t.Fatalf("255-byte key ID: %v", err)
	}
}

func TestCanonicalContextRefusesNonMinimalLengths(t *testing.T) {
	good := CanonicalContext(map[string]string{"a": "b"}) // 01 'a' 01 'b'
	if _, err := ParseCanonicalContext(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{
		{0x81, 0x00, 'a', 0x01, 'b'},            // key length 1 in two bytes
		{0x01, 'a', 0x80, 0x00},                 // value length 0 in two bytes
		{0x80, 0x80, 0x00, 0x00},                // empty key, three bytes
		{0x01, 'a', 0x01, 'b', 0x01, 'a', 0x00}, // repeated key
		{0x01, 'b', 0x00, 0x01, 'a', 0x00},      // out of order
		{0x05, 'a'},                             // longer than the input
	} {
		if m, err := ParseCanonicalContext(bad); err == nil {
			t.Errorf("ParseCanonicalContext(%x) = %v, want an error", bad, m)
		}
	}
}

// One VersionKey serves many calls at once (run with -race): format 2
// clones the keyed HMAC per message and never writes the shared one.
func TestVersionKeyConcurrent(t *testing.T) {
	k := testVK(t, "k", 1)
	ec := CanonicalContext(map[string]string{"a": "b"})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := []byte{byte(g)}
			for range 200 {
				blob, err := k.Encrypt(rand.Reader, pt, ec)
				if err != nil {
					errs <- err
					return
				}
				h, body, err := ParseCiphertext(blob)
				if err == nil {
					var got []byte
					if got, err = k.Decrypt(h, body, ec); err == nil && !bytes.Equal(got, pt) {
						err = errors.New("wrong plaintext")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
