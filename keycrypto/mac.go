package keycrypto

import (
	"crypto"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
)

// MAC algorithms, as AWS KMS names them.
const (
	AlgHMACSHA224 = "HMAC_SHA_224"
	AlgHMACSHA256 = "HMAC_SHA_256"
	AlgHMACSHA384 = "HMAC_SHA_384"
	AlgHMACSHA512 = "HMAC_SHA_512"
)

var macAlgs = map[string]crypto.Hash{
	AlgHMACSHA224: crypto.SHA224,
	AlgHMACSHA256: crypto.SHA256,
	AlgHMACSHA384: crypto.SHA384,
	AlgHMACSHA512: crypto.SHA512,
}

// ErrInvalidMAC is a MAC that does not verify (KMSInvalidMacException).
var ErrInvalidMAC = errors.New("the MAC is not valid")

// MACKey is one version of an HMAC key, ready to compute MACs. It lives
// only in memory, inside a Cache, and keeps no copy of the raw material:
// only an HMAC state that has absorbed the key, cloned for each message.
type MACKey struct {
	spec string
	hash crypto.Hash
	prf  hash.Cloner
}

// NewMACKey makes a MACKey from HMAC key material of the given spec. The
// caller clears material afterwards.
func NewMACKey(spec string, material []byte) (*MACKey, error) {
	info, ok := specs[spec]
	if !ok || info.kind != kindHMAC {
		return nil, fmt.Errorf("keycrypto: %s is not an HMAC key spec", spec)
	}
	if len(material) < info.macMin || len(material) > info.macMax {
		return nil, fmt.Errorf("keycrypto: %s key material must be %d to %d bytes", spec, info.macMin, info.macMax)
	}
	m := hmac.New(info.hash.New, material)
	m.Reset() // keeps the hashed key blocks, so clones skip them
	c, ok := m.(hash.Cloner)
	if !ok {
		return nil, fmt.Errorf("keycrypto: HMAC cannot be cloned")
	}
	return &MACKey{spec: spec, hash: info.hash, prf: c}, nil
}

func (k *MACKey) check(algorithm string, message []byte) error {
	if h, ok := macAlgs[algorithm]; !ok || h != k.hash {
		return fmt.Errorf("%w: MacAlgorithm %s is not valid for %s; use %v", ErrAlgorithm, algorithm, k.spec, MACAlgorithms(k.spec))
	}
	if len(message) == 0 || len(message) > MaxSignMessage {
		return fmt.Errorf("%w: the message must be 1 to %d bytes", ErrMessage, MaxSignMessage)
	}
	return nil
}

// MAC is the HMAC (RFC 2104) of a message under the key, with the hash of
// the algorithm, which must be the key's.
func (k *MACKey) MAC(algorithm string, message []byte) ([]byte, error) {
	if err := k.check(algorithm, message); err != nil {
		return nil, err
	}
	m, err := k.prf.Clone()
	if err != nil {
		return nil, fmt.Errorf("keycrypto: HMAC clone: %w", err)
	}
	m.Write(message)
	return m.Sum(nil), nil
}

// Verify compares, in constant time, a MAC with the MAC of the message; a
// mismatch is ErrInvalidMAC.
func (k *MACKey) Verify(algorithm string, message, mac []byte) error {
	want, err := k.MAC(algorithm, message)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, mac) {
		return ErrInvalidMAC
	}
	return nil
}
