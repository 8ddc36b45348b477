package keycrypto

import (
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

// NewAccessKey makes a random access key ID and secret.
func NewAccessKey(random io.Reader) (id, secret string, err error) {
	var idBytes [10]byte // 16 base32 characters
	var secretBytes [30]byte
	if _, err := io.ReadFull(random, idBytes[:]); err != nil {
		return "", "", fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	if _, err := io.ReadFull(random, secretBytes[:]); err != nil {
		return "", "", fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	id = AccessKeyIDPrefix + base32.StdEncoding.EncodeToString(idBytes[:])
	secret = base64.StdEncoding.EncodeToString(secretBytes[:])
	return id, secret, nil
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
