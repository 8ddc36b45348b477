package keycrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// RootKeySize is the size of a cluster root key (AES-256).
const RootKeySize = 32

// sealFormatV1 opens every sealed blob: nonce (12 bytes) and AES-256-GCM
// output follow.
const sealFormatV1 byte = 0x01

// Domains separate what a sealed blob may be opened as: material of a key
// version can never be opened as a wrapping private key or the other way round.
const (
	domainMaterial    = "raftkms/material/v1"
	domainWrappingKey = "raftkms/wrapping-key/v1"
	domainFingerprint = "raftkms/fingerprint/v1"
)

// RootKey is the cluster root key. Every node of a cluster holds the same
// one; it seals key material before it is proposed, so the log, snapshots
// and BoltDB hold only sealed bytes.
type RootKey struct {
	raw    [RootKeySize]byte
	aead   cipher.AEAD // AES-256-GCM under raw
	fpKey  []byte      // HMAC key for fingerprints, derived from raw
	random io.Reader   // nonces; crypto/rand unless a test says otherwise
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
	m := hmac.New(sha256.New, r.raw[:])
	m.Write([]byte(domainFingerprint))
	r.fpKey = m.Sum(nil)
	return r, nil
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
// ignored), as `kmsd gen-root-key` writes it, or 32 raw bytes.
func ParseRootKey(data []byte) (*RootKey, error) {
	if len(data) == RootKeySize {
		return NewRootKey(data)
	}
	text := strings.TrimSpace(string(data))
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, ErrInvalidRootKey
	}
	defer clear(raw)
	return NewRootKey(raw)
}

// EncodeRootKey is the file form of a root key: base64 and a newline.
func EncodeRootKey(r *RootKey) []byte {
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

func (r *RootKey) seal(aad, plaintext []byte) ([]byte, error) {
	ns := r.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+r.aead.Overhead())
	out[0] = sealFormatV1
	if _, err := io.ReadFull(r.random, out[1:]); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	return r.aead.Seal(out, out[1:], plaintext, aad), nil
}

func (r *RootKey) open(aad, sealed []byte) ([]byte, error) {
	ns := r.aead.NonceSize()
	if len(sealed) < 1+ns+r.aead.Overhead() || sealed[0] != sealFormatV1 {
		return nil, ErrSealed
	}
	pt, err := r.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, ErrSealed
	}
	return pt, nil
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
