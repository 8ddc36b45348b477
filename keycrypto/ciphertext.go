package keycrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
)

// Ciphertext blob layouts. VersionKey.Encrypt writes format 2;
// VersionKey.Decrypt reads both, so every ciphertext a client ever got
// keeps opening.
//
// Format 1 (before per-message keys):
//
//	byte 0        format (0x01)
//	byte 1        n = length of the key ID (1..255)
//	bytes 2..     key ID (n bytes)
//	next 4 bytes  key version, big endian
//	next 12 bytes nonce
//	rest          AES-256-GCM output (ciphertext and 16-byte tag) under the
//	              version key itself
//
// Format 2 (per-message keys):
//
//	byte 0        format (0x02)
//	byte 1        n = length of the key ID (1..255)
//	bytes 2..     key ID (n bytes)
//	next 4 bytes  key version, big endian
//	next 32 bytes salt, random per message
//	rest          AES-256-GCM output (ciphertext and 16-byte tag) under the
//	              message key, with a nonce of 12 zero bytes
//
//	message key = HKDF-SHA-256-Expand(PRK = version key,
//	                  info = "raftkms/ciphertext/v2" || header || salt, L = 32)
//
// In both formats the header is the format byte through the version, and
// the AAD is the header followed by the canonical encryption context, so a
// blob cannot be moved to another key or version, and opens only with the
// context it was made with. Format 2 also binds the header in the
// derivation, so the same material imported into two keys still yields
// unrelated message keys.
//
// The version key is a uniformly random AES-256 key (generated, or imported
// as one, as AWS KMS requires of imported material), so it serves directly as
// HKDF's pseudorandom key (RFC 5869 section 3.3: the extract step is for
// input that is not yet a uniform key); the expand step is then one
// HMAC-SHA-256 keyed by the version key, whose padded key blocks are hashed
// once per cached version, not per message.
//
// Message budget. Format 1 draws a random 96-bit nonce per message under one
// key, and GCM's limit for random nonces (NIST SP 800-38D, collision
// probability at most 2^-32) is 2^32 messages per version: a hot version
// spends it in under a day at 60k encryptions/s. In format 2 each message key
// seals exactly one message, so the fixed nonce is never reused under a key;
// what must not repeat is the 256-bit salt, and n messages repeat one with
// probability about n^2/2^257: at most 2^-32 up to n = 2^112 messages per
// version, beyond reach at any rate (at 10^9 messages/s, 2^112 messages take
// about 10^17 years).
const (
	CiphertextFormatV1 byte = 0x01
	CiphertextFormatV2 byte = 0x02
	nonceSize               = 12
	saltSize                = 32
	tagSize                 = 16
	maxKeyIDLen             = 255
	domainCiphertextV2      = "raftkms/ciphertext/v2"
)

// zeroNonce is format 2's nonce: each message key seals one message only.
var zeroNonce [nonceSize]byte

// expandCounter ends HKDF-Expand's input for its first (and only) block.
var expandCounter = []byte{1}

// Header is the clear part of a ciphertext blob: which key and version
// opens it, and in which format.
type Header struct {
	KeyID   string
	Version uint32
	Format  byte   // CiphertextFormatV1 or CiphertextFormatV2
	iv      []byte // format 1: the nonce; format 2: the salt
	raw     []byte // format byte through version: the start of the AAD
}

// VersionKey is one key version's material, unsealed, in the forms the
// ciphertext formats need: an AEAD under the material for format 1, and an
// HMAC keyed by the material from which format 2 derives message keys. The
// material itself is not kept. A VersionKey is safe for concurrent use; the
// Cache hands out one per key version, so Encrypt and Decrypt need no
// further lookups.
type VersionKey struct {
	keyID   string
	version uint32
	hdr     []byte      // the format 2 header of this version
	v1      cipher.AEAD // AES-256-GCM directly under the material
	// prf is HMAC-SHA-256 keyed by the material that has already absorbed
	// the format 2 domain and header. It is never written again: each
	// message clones it and adds its salt.
	prf hash.Cloner
	// prfs are clones of prf for reuse: a message resets one (back to the
	// keyed state) and absorbs the domain, header and its salt again, which
	// costs less than a clone's three allocations.
	prfs sync.Pool
}

// NewVersionKey prepares one key version's material (an AES key: 16, 24 or
// 32 bytes; raftkms makes and imports 32) for Encrypt and Decrypt. The
// caller clears material afterwards; the VersionKey keeps no copy of it.
func NewVersionKey(keyID string, version uint32, material []byte) (*VersionKey, error) {
	if len(keyID) == 0 || len(keyID) > maxKeyIDLen {
		return nil, fmt.Errorf("keycrypto: key ID of %d bytes", len(keyID))
	}
	if version == 0 {
		return nil, fmt.Errorf("keycrypto: key version 0")
	}
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("keycrypto: key material of %d bytes is not an AES key", len(material))
	}
	k := &VersionKey{keyID: keyID, version: version}
	if k.v1, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	k.hdr = make([]byte, 2+len(keyID)+4)
	k.hdr[0] = CiphertextFormatV2
	k.hdr[1] = byte(len(keyID))
	copy(k.hdr[2:], keyID)
	binary.BigEndian.PutUint32(k.hdr[2+len(keyID):], version)
	m := hmac.New(sha256.New, material)
	m.Reset() // keeps the hashed key blocks, so clones skip them
	m.Write([]byte(domainCiphertextV2))
	m.Write(k.hdr)
	c, ok := m.(hash.Cloner)
	if !ok {
		return nil, fmt.Errorf("keycrypto: HMAC-SHA-256 cannot be cloned")
	}
	k.prf = c
	return k, nil
}

// KeyID is the key this version belongs to.
func (k *VersionKey) KeyID() string { return k.keyID }

// Version is the version number.
func (k *VersionKey) Version() uint32 { return k.version }

// messageAEAD is the AEAD under the message key for one salt (format 2).
func (k *VersionKey) messageAEAD(salt []byte) (cipher.AEAD, error) {
	c, _ := k.prfs.Get().(hash.Hash)
	if c == nil {
		cl, err := k.prf.Clone()
		if err != nil {
			return nil, err
		}
		c = cl
	}
	c.Reset() // the keyed state, before the domain and header
	c.Write([]byte(domainCiphertextV2))
	c.Write(k.hdr)
	c.Write(salt)
	c.Write(expandCounter)
	var mk [sha256.Size]byte
	c.Sum(mk[:0])
	k.prfs.Put(c)
	block, err := aes.NewCipher(mk[:])
	clear(mk[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Encrypt seals plaintext under this key version in the newest format (2)
// and returns the blob. ec is the canonical encryption context
// (CanonicalContext).
func (k *VersionKey) Encrypt(random io.Reader, plaintext, ec []byte) ([]byte, error) {
	hdrLen := len(k.hdr)
	out := make([]byte, hdrLen+saltSize, hdrLen+saltSize+len(plaintext)+tagSize)
	copy(out, k.hdr)
	salt := out[hdrLen:]
	if _, err := io.ReadFull(random, salt); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	aead, err := k.messageAEAD(salt)
	if err != nil {
		return nil, err
	}
	return aead.Seal(out, zeroNonce[:], plaintext, withContext(out[:hdrLen], ec)), nil
}

// Decrypt opens the body of a parsed blob of this key version, in either
// format, with the canonical encryption context.
func (k *VersionKey) Decrypt(h Header, body, ec []byte) ([]byte, error) {
	if len(h.raw) == 0 {
		return nil, fmt.Errorf("%w: header not parsed", ErrInvalidCiphertext)
	}
	if h.KeyID != k.keyID || h.Version != k.version {
		return nil, fmt.Errorf("%w: the ciphertext names another key version", ErrInvalidCiphertext)
	}
	var (
		aead  cipher.AEAD
		nonce []byte
	)
	switch h.Format {
	case CiphertextFormatV1:
		aead, nonce = k.v1, h.iv
	case CiphertextFormatV2:
		var err error
		if aead, err = k.messageAEAD(h.iv); err != nil {
			return nil, err
		}
		nonce = zeroNonce[:]
	default:
		return nil, fmt.Errorf("%w: %w (format byte 0x%02x)", ErrInvalidCiphertext, ErrUnsupportedFormat, h.Format)
	}
	pt, err := aead.Open(nil, nonce, body, withContext(h.raw, ec))
	if err != nil {
		// A wrong context and a tampered blob look the same, on purpose.
		return nil, fmt.Errorf("%w: it does not open with this key version and encryption context", ErrInvalidCiphertext)
	}
	return pt, nil
}

// withContext is the AAD: the header, then the canonical context.
func withContext(hdr, ec []byte) []byte {
	if len(ec) == 0 {
		return hdr
	}
	return append(append(make([]byte, 0, len(hdr)+len(ec)), hdr...), ec...)
}

// ParseCiphertext splits a blob into its header and sealed body. It never
// panics; anything malformed is ErrInvalidCiphertext.
func ParseCiphertext(blob []byte) (Header, []byte, error) {
	var h Header
	if len(blob) == 0 {
		return h, nil, fmt.Errorf("%w: empty", ErrInvalidCiphertext)
	}
	var ivLen int
	switch blob[0] {
	case CiphertextFormatV1:
		ivLen = nonceSize
	case CiphertextFormatV2:
		ivLen = saltSize
	default:
		return h, nil, fmt.Errorf("%w: %w (format byte 0x%02x)", ErrInvalidCiphertext, ErrUnsupportedFormat, blob[0])
	}
	if len(blob) < 2 {
		return h, nil, fmt.Errorf("%w: truncated", ErrInvalidCiphertext)
	}
	n := int(blob[1])
	hdrLen := 2 + n + 4
	if n == 0 || len(blob) < hdrLen+ivLen+tagSize {
		return h, nil, fmt.Errorf("%w: truncated", ErrInvalidCiphertext)
	}
	h.Format = blob[0]
	h.KeyID = string(blob[2 : 2+n])
	h.Version = binary.BigEndian.Uint32(blob[2+n:])
	if h.Version == 0 {
		return Header{}, nil, fmt.Errorf("%w: version 0", ErrInvalidCiphertext)
	}
	h.raw = blob[:hdrLen]
	h.iv = blob[hdrLen : hdrLen+ivLen]
	return h, blob[hdrLen+ivLen:], nil
}

// CanonicalContext encodes an encryption context deterministically: pairs
// sorted by key, each key and value length-prefixed (so no two contexts
// share an encoding). An empty context encodes as nil.
func CanonicalContext(ec map[string]string) []byte {
	if len(ec) == 0 {
		return nil
	}
	keys := make([]string, 0, len(ec))
	size := 0
	for k, v := range ec {
		keys = append(keys, k)
		size += len(k) + len(v) + 2*binary.MaxVarintLen32
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	for _, k := range keys {
		v := ec[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// ParseCanonicalContext decodes CanonicalContext's encoding. It never
// panics; it refuses keys out of order or repeated and lengths not in their
// shortest encoding, so each context has exactly one encoding: whatever it
// accepts, CanonicalContext writes back byte for byte.
func ParseCanonicalContext(b []byte) (map[string]string, error) {
	out := map[string]string{}
	prev, first := "", true
	for len(b) > 0 {
		k, rest, err := readLenPrefixed(b)
		if err != nil {
			return nil, err
		}
		v, rest, err := readLenPrefixed(rest)
		if err != nil {
			return nil, err
		}
		if !first && k <= prev {
			return nil, fmt.Errorf("keycrypto: encryption context keys out of order")
		}
		out[k], prev, first, b = v, k, false, rest
	}
	return out, nil
}

func readLenPrefixed(b []byte) (string, []byte, error) {
	n, m := binary.Uvarint(b)
	if m <= 0 || n > uint64(len(b)-m) {
		return "", nil, fmt.Errorf("keycrypto: malformed encryption context")
	}
	// Uvarint also reads padded encodings (0x80 0x00 for 0); only the
	// shortest one, which CanonicalContext writes, is canonical.
	var minimal [binary.MaxVarintLen64]byte
	if binary.PutUvarint(minimal[:], n) != m {
		return "", nil, fmt.Errorf("keycrypto: encryption context length not minimally encoded")
	}
	end := m + int(n)
	return string(b[m:end]), b[end:], nil
}
