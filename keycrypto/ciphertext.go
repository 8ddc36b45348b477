package keycrypto

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Ciphertext blob layout (format 1):
//
//	byte 0        format (0x01)
//	byte 1        n = length of the key ID (1..255)
//	bytes 2..     key ID (n bytes)
//	next 4 bytes  key version, big endian
//	next 12 bytes nonce
//	rest          AES-256-GCM output (ciphertext and 16-byte tag)
//
// The AAD is the header (format byte through version) followed by the
// canonical encryption context, so a blob cannot be moved to another key or
// version, and opens only with the context it was made with.
const (
	CiphertextFormatV1 byte = 0x01
	nonceSize               = 12
	tagSize                 = 16
	maxKeyIDLen             = 255
)

// Header is the clear part of a ciphertext blob: which key and version
// opens it.
type Header struct {
	KeyID   string
	Version uint32
	nonce   []byte
	raw     []byte // format byte through version: the start of the AAD
}

// Encrypt seals plaintext under one key version's AEAD and returns a blob.
// ec is the canonical encryption context (CanonicalContext).
func Encrypt(aead cipher.AEAD, keyID string, version uint32, random io.Reader, plaintext, ec []byte) ([]byte, error) {
	if len(keyID) == 0 || len(keyID) > maxKeyIDLen {
		return nil, fmt.Errorf("keycrypto: key ID of %d bytes", len(keyID))
	}
	hdrLen := 2 + len(keyID) + 4
	out := make([]byte, hdrLen+nonceSize, hdrLen+nonceSize+len(plaintext)+tagSize)
	out[0] = CiphertextFormatV1
	out[1] = byte(len(keyID))
	copy(out[2:], keyID)
	binary.BigEndian.PutUint32(out[2+len(keyID):], version)
	nonce := out[hdrLen:]
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	aad := out[:hdrLen]
	if len(ec) > 0 {
		aad = append(append(make([]byte, 0, hdrLen+len(ec)), out[:hdrLen]...), ec...)
	}
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// ParseCiphertext splits a blob into its header and sealed body. It never
// panics; anything malformed is ErrInvalidCiphertext.
func ParseCiphertext(blob []byte) (Header, []byte, error) {
	var h Header
	if len(blob) == 0 {
		return h, nil, fmt.Errorf("%w: empty", ErrInvalidCiphertext)
	}
	if blob[0] != CiphertextFormatV1 {
		return h, nil, fmt.Errorf("%w: %w (format byte 0x%02x)", ErrInvalidCiphertext, ErrUnsupportedFormat, blob[0])
	}
	if len(blob) < 2 {
		return h, nil, fmt.Errorf("%w: truncated", ErrInvalidCiphertext)
	}
	n := int(blob[1])
	hdrLen := 2 + n + 4
	if n == 0 || len(blob) < hdrLen+nonceSize+tagSize {
		return h, nil, fmt.Errorf("%w: truncated", ErrInvalidCiphertext)
	}
	h.KeyID = string(blob[2 : 2+n])
	h.Version = binary.BigEndian.Uint32(blob[2+n:])
	if h.Version == 0 {
		return h, nil, fmt.Errorf("%w: version 0", ErrInvalidCiphertext)
	}
	h.raw = blob[:hdrLen]
	h.nonce = blob[hdrLen : hdrLen+nonceSize]
	return h, blob[hdrLen+nonceSize:], nil
}

// Decrypt opens the body of a parsed blob with the key version's AEAD and
// the canonical encryption context.
func Decrypt(aead cipher.AEAD, h Header, body, ec []byte) ([]byte, error) {
	if len(h.nonce) != nonceSize || len(h.raw) == 0 {
		return nil, fmt.Errorf("%w: header not parsed", ErrInvalidCiphertext)
	}
	aad := h.raw
	if len(ec) > 0 {
		aad = append(append(make([]byte, 0, len(h.raw)+len(ec)), h.raw...), ec...)
	}
	pt, err := aead.Open(nil, h.nonce, body, aad)
	if err != nil {
		// A wrong context and a tampered blob look the same, on purpose.
		return nil, fmt.Errorf("%w: it does not open with this key version and encryption context", ErrInvalidCiphertext)
	}
	return pt, nil
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
// panics; it refuses keys out of order or repeated, so each context has
// exactly one encoding.
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
	end := m + int(n)
	return string(b[m:end]), b[end:], nil
}
