package keycrypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// domainAccessKey separates sealed access-key secrets from everything else
// the root key seals: a secret never opens as key material, nor the other
// way round.
const domainAccessKey = "raftkms/access-key/v1"

// Access keys of the AWS-protocol front have AWS's form: a 20-character ID
// starting "AKIA" and a 40-character secret, both random.
const (
	AccessKeyIDPrefix  = "AKIA"
	AccessKeyIDLen     = 20
	AccessKeySecretLen = 40
)

// domainAccessKeyDerive derives the access key of a request (AccessKeyFor).
const domainAccessKeyDerive = "raftkms/access-key-derive/v1"

// NewAccessKey makes a random access key ID and secret.
func NewAccessKey(random io.Reader) (id, secret string, err error) {
	var b [40]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", "", fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	id, secret = accessKeyOf(b)
	return id, secret, nil
}

// AccessKeyFor derives the access key of one request, named by a scope
// unique to it (its principal and request ID): a retry of the same request
// gets the same ID and secret, so a retried CreateAccessKey whose first
// answer was lost can still show the secret that the state holds sealed.
// Only a holder of the root key can derive it.
func (r *RootKey) AccessKeyFor(scope string) (id, secret string) {
	m := hmac.New(sha256.New, r.mac(domainAccessKeyDerive))
	m.Write([]byte(scope))
	first := m.Sum(nil)
	m.Write([]byte{1})
	var b [40]byte
	copy(b[:32], first)
	copy(b[32:], m.Sum(nil))
	return accessKeyOf(b)
}

// accessKeyOf spells 40 bytes as an access key: 10 for the ID (16 base32
// characters after AKIA), 30 for the secret (40 base64 characters).
func accessKeyOf(b [40]byte) (id, secret string) {
	return AccessKeyIDPrefix + base32.StdEncoding.EncodeToString(b[:10]), base64.StdEncoding.EncodeToString(b[10:])
}

// ValidAccessKeyID reports whether id has the form NewAccessKey makes.
func ValidAccessKeyID(id string) bool {
	if len(id) != AccessKeyIDLen || !strings.HasPrefix(id, AccessKeyIDPrefix) {
		return false
	}
	_, err := base32.StdEncoding.DecodeString(id[len(AccessKeyIDPrefix):])
	return err == nil
}

// SealAccessKeySecret seals an access key's secret, bound to the key ID and
// the identity it belongs to, so a sealed secret moved to another access key
// or identity does not open.
func (r *RootKey) SealAccessKeySecret(accessKeyID, identity string, secret []byte) ([]byte, error) {
	return r.seal(sealAAD(domainAccessKey, accessKeyID, 0, identity), secret)
}

// OpenAccessKeySecret unseals a secret sealed by SealAccessKeySecret.
func (r *RootKey) OpenAccessKeySecret(accessKeyID, identity string, sealed []byte) ([]byte, error) {
	return r.open(sealAAD(domainAccessKey, accessKeyID, 0, identity), sealed)
}
