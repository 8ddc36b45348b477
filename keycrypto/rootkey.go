package keycrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// RootKeySize is the size of a cluster root key (AES-256).
const RootKeySize = 32

// Sealed blob layouts. Seal writes format 2; Open reads both, so the log
// entries and snapshots written before root-key IDs existed still replay.
//
// Format 1:
//
//	byte 0         format (0x01)
//	next 12 bytes  nonce
//	rest           AES-256-GCM output under the root key
//
// Format 2:
//
//	byte 0         format (0x02)
//	next 8 bytes   root-key ID (RootKey.ID, raw), so a node can tell which
//	               root key a blob needs, and a future root-key rotation can
//	               tell which blobs still need re-sealing
//	next 12 bytes  nonce
//	rest           AES-256-GCM output under the root key
//
// The AAD of format 1 is the domain, key ID, version (or 0) and token ID
// (sealAAD); format 2 prefixes it with its own first 9 bytes, so the
// root-key ID cannot be changed without the blob failing to open.
const (
	sealFormatV1 byte = 0x01
	sealFormatV2 byte = 0x02
	rootKeyIDLen      = 8
	sealNonceLen      = 12
	sealV1MinLen      = 1 + sealNonceLen + tagSize
	sealV2MinLen      = 1 + rootKeyIDLen + sealNonceLen + tagSize
)

// CheckValueSize is the length of RootKey.CheckValue.
const CheckValueSize = 16

// Domains separate what a sealed blob may be opened as (material of a key
// version can never be opened as a wrapping private key or the other way
// round) and what the root key is used for besides sealing.
const (
	domainMaterial    = "raftkms/material/v1"
	domainWrappingKey = "raftkms/wrapping-key/v1"
	domainFingerprint = "raftkms/fingerprint/v1"
	domainRootKeyID   = "raftkms/root-key-id/v1"
	domainCheckValue  = "raftkms/root-key-check/v1"
)

// RootKey is the cluster root key. Every node of a cluster holds the same
// one; it seals key material before it is proposed, so the log, snapshots
// and BoltDB hold only sealed bytes.
type RootKey struct {
	raw    [RootKeySize]byte
	aead   cipher.AEAD // AES-256-GCM under raw
	fpKey  []byte      // HMAC key for fingerprints, derived from raw
	id     [rootKeyIDLen]byte
	check  [CheckValueSize]byte
	random io.Reader // nonces; crypto/rand unless a test says otherwise

	// A root keyring (NewRootKeyRing) is its first key's fields above, so
	// ID, CheckValue, Fingerprint and AccessKeyFor stay those of the key the
	// cluster's root-key check records, plus these two: sealer seals new
	// blobs (the newest key), members open them (oldest first). Both are nil
	// for a single root key.
	sealer  *RootKey
	members []*RootKey
}

// NewRootKey makes a root key from 32 raw bytes.
func NewRootKey(raw []byte) (*RootKey, error) {
	if len(raw) != RootKeySize {
		return nil, ErrInvalidRootKey
	}
	r := &RootKey{random: rand.Reader}
	copy(r.raw[:], raw)
	block, err := aes.NewCipher(r.raw[:])
	if err != nil {
		return nil, err
	}
	if r.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	r.fpKey = r.mac(domainFingerprint)
	copy(r.id[:], r.mac(domainRootKeyID))
	copy(r.check[:], r.mac(domainCheckValue))
	return r, nil
}

// mac is HMAC-SHA-256 under the root key over a domain string: a value
// that depends on the root key but from which the key cannot be recovered.
func (r *RootKey) mac(domain string) []byte {
	m := hmac.New(sha256.New, r.raw[:])
	m.Write([]byte(domain))
	return m.Sum(nil)
}

// ID is a short, stable, non-secret name of the root key (16 hex digits of
// HMAC-SHA-256 under the root key over its own domain string). Logs, error
// messages and `kmsctl cluster status` may show it; it tells two root keys
// apart without revealing anything about either.
func (r *RootKey) ID() string { return hex.EncodeToString(r.id[:]) }

// CheckValue is a non-secret check value of the root key (16 bytes of
// HMAC-SHA-256 under the root key over a domain string of its own). The
// cluster records it in its replicated state, so a node started with another
// root key notices before it serves. Compare with MatchesCheckValue or
// subtle.ConstantTimeCompare.
func (r *RootKey) CheckValue() []byte { return append([]byte(nil), r.check[:]...) }

// MatchesCheckValue reports, in constant time, whether cv is this root
// key's CheckValue.
func (r *RootKey) MatchesCheckValue(cv []byte) bool {
	if r.members != nil {
		return r.ringMatches(cv)
	}
	return subtle.ConstantTimeCompare(cv, r.check[:]) == 1
}

// GenerateRootKey makes a new random root key.
func GenerateRootKey(random io.Reader) (*RootKey, error) {
	var raw [RootKeySize]byte
	if _, err := io.ReadFull(random, raw[:]); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	defer clear(raw[:])
	return NewRootKey(raw[:])
}

// ParseRootKey reads a root key file: base64 text (surrounding whitespace
// ignored), as `kmsd gen-root-key` writes it, 32 raw bytes, or a root
// keyring of several lines (ParseRootKeyRing).
func ParseRootKey(data []byte) (*RootKey, error) {
	if len(data) == RootKeySize {
		return NewRootKey(data)
	}
	if isRingFile(data) {
		return ParseRootKeyRing(data)
	}
	text := strings.TrimSpace(string(data))
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, ErrInvalidRootKey
	}
	defer clear(raw)
	return NewRootKey(raw)
}

// EncodeRootKey is the file form of a root key: base64 and a newline (a
// ring's is a keyring file, see ring.go).
func EncodeRootKey(r *RootKey) []byte {
	if r.members != nil {
		return encodeRing(r)
	}
	return []byte(base64.StdEncoding.EncodeToString(r.raw[:]) + "\n")
}

// aad binds a sealed blob to its domain, key ID and a number (the version).
func sealAAD(domain, keyID string, n uint32, extra string) []byte {
	b := make([]byte, 0, len(domain)+len(keyID)+len(extra)+16)
	b = append(b, domain...)
	b = binary.AppendUvarint(b, uint64(len(keyID)))
	b = append(b, keyID...)
	b = binary.BigEndian.AppendUint32(b, n)
	b = binary.AppendUvarint(b, uint64(len(extra)))
	return append(b, extra...)
}

// seal writes a format 2 blob; aad is sealAAD's binding of what it holds.
func (r *RootKey) seal(aad, plaintext []byte) ([]byte, error) {
	if r.sealer != nil {
		return r.sealer.seal(aad, plaintext)
	}
	const hdr = 1 + rootKeyIDLen
	out := make([]byte, hdr+sealNonceLen, hdr+sealNonceLen+len(plaintext)+r.aead.Overhead())
	out[0] = sealFormatV2
	copy(out[1:], r.id[:])
	nonce := out[hdr:]
	if _, err := io.ReadFull(r.random, nonce); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	full := append(append(make([]byte, 0, hdr+len(aad)), out[:hdr]...), aad...)
	return r.aead.Seal(out, nonce, plaintext, full), nil
}

// open reads a format 1 or format 2 blob. A format 2 blob that names
// another root key is ErrWrongRootKey; anything else that does not open is
// ErrSealed.
func (r *RootKey) open(aad, sealed []byte) ([]byte, error) {
	if r.members != nil {
		return r.openRing(aad, sealed)
	}
	if len(sealed) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrSealed)
	}
	var nonce, body []byte
	switch sealed[0] {
	case sealFormatV1:
		if len(sealed) < sealV1MinLen {
			return nil, fmt.Errorf("%w: truncated", ErrSealed)
		}
		nonce, body = sealed[1:1+sealNonceLen], sealed[1+sealNonceLen:]
	case sealFormatV2:
		if len(sealed) < sealV2MinLen {
			return nil, fmt.Errorf("%w: truncated", ErrSealed)
		}
		const hdr = 1 + rootKeyIDLen
		if subtle.ConstantTimeCompare(sealed[1:hdr], r.id[:]) != 1 {
			return nil, &wrongRootKeyError{sealed: hex.EncodeToString(sealed[1:hdr]), held: r.ID()}
		}
		nonce, body = sealed[hdr:hdr+sealNonceLen], sealed[hdr+sealNonceLen:]
		aad = append(append(make([]byte, 0, hdr+len(aad)), sealed[:hdr]...), aad...)
	default:
		return nil, fmt.Errorf("%w: unknown format 0x%02x", ErrSealed, sealed[0])
	}
	pt, err := r.aead.Open(nil, nonce, body, aad)
	if err != nil {
		return nil, ErrSealed
	}
	return pt, nil
}

// SealedRootKeyID names the root key a sealed blob was sealed under (as
// RootKey.ID spells it). ok is false for format 1 blobs, which carry no
// root-key ID, and for anything that is not a well-formed sealed blob.
func SealedRootKeyID(sealed []byte) (id string, ok bool) {
	if len(sealed) < sealV2MinLen || sealed[0] != sealFormatV2 {
		return "", false
	}
	return hex.EncodeToString(sealed[1 : 1+rootKeyIDLen]), true
}

// Seal seals the material of one key version. The AAD binds the key ID and
// version, so sealed material moved to another key or version does not open.
func (r *RootKey) Seal(keyID string, version uint32, material []byte) ([]byte, error) {
	return r.seal(sealAAD(domainMaterial, keyID, version, ""), material)
}

// Open unseals the material of one key version. The caller clears it when done.
func (r *RootKey) Open(keyID string, version uint32, sealed []byte) ([]byte, error) {
	return r.open(sealAAD(domainMaterial, keyID, version, ""), sealed)
}

// SealPrivateKey seals the private half of an import wrapping key pair,
// bound to the key and the import token.
func (r *RootKey) SealPrivateKey(keyID, tokenID string, der []byte) ([]byte, error) {
	return r.seal(sealAAD(domainWrappingKey, keyID, 0, tokenID), der)
}

// OpenPrivateKey unseals a wrapping private key sealed by SealPrivateKey.
func (r *RootKey) OpenPrivateKey(keyID, tokenID string, sealed []byte) ([]byte, error) {
	return r.open(sealAAD(domainWrappingKey, keyID, 0, tokenID), sealed)
}

// Fingerprint is a keyed digest (HMAC-SHA-256 under a key derived from the
// root key) of imported material, bound to the key ID. It lets the state
// machine recognise the same material on re-import without holding anything
// from which the material could be guessed offline.
func (r *RootKey) Fingerprint(keyID string, material []byte) []byte {
	m := hmac.New(sha256.New, r.fpKey)
	var n [binary.MaxVarintLen64]byte
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(keyID)))])
	m.Write([]byte(keyID))
	m.Write(material)
	return m.Sum(nil)
}
