package keycrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
)

// Signing and asymmetric encryption algorithms, as AWS KMS names them.
const (
	AlgPSSSHA256   = "RSASSA_PSS_SHA_256"
	AlgPSSSHA384   = "RSASSA_PSS_SHA_384"
	AlgPSSSHA512   = "RSASSA_PSS_SHA_512"
	AlgPKCS1SHA256 = "RSASSA_PKCS1_V1_5_SHA_256"
	AlgPKCS1SHA384 = "RSASSA_PKCS1_V1_5_SHA_384"
	AlgPKCS1SHA512 = "RSASSA_PKCS1_V1_5_SHA_512"
	AlgECDSASHA256 = "ECDSA_SHA_256"
	AlgECDSASHA384 = "ECDSA_SHA_384"
	AlgECDSASHA512 = "ECDSA_SHA_512"

	AlgRSAOAEPSHA1   = "RSAES_OAEP_SHA_1"
	AlgRSAOAEPSHA256 = "RSAES_OAEP_SHA_256"
)

// Message types of Sign and Verify.
const (
	MessageRaw    = "RAW"
	MessageDigest = "DIGEST"
)

// MaxSignMessage is the largest message Sign, Verify, GenerateMac and
// VerifyMac accept (AWS KMS's limit).
const MaxSignMessage = 4096

// Errors of the asymmetric operations. Messages name algorithms and
// lengths, never key material.
var (
	// ErrInvalidSignature is a signature that does not verify
	// (KMSInvalidSignatureException).
	ErrInvalidSignature = errors.New("the signature is not valid")
	// ErrAlgorithm is an algorithm the key does not support, or an
	// unknown one.
	ErrAlgorithm = errors.New("the algorithm is not valid for this key")
	// ErrMessage is a message or digest of the wrong size for the request.
	ErrMessage = errors.New("the message is not valid for this request")
)

type signingAlg struct {
	hash  crypto.Hash
	pss   bool
	ecdsa bool
}

var signingAlgs = map[string]signingAlg{
	AlgPSSSHA256:   {hash: crypto.SHA256, pss: true},
	AlgPSSSHA384:   {hash: crypto.SHA384, pss: true},
	AlgPSSSHA512:   {hash: crypto.SHA512, pss: true},
	AlgPKCS1SHA256: {hash: crypto.SHA256},
	AlgPKCS1SHA384: {hash: crypto.SHA384},
	AlgPKCS1SHA512: {hash: crypto.SHA512},
	AlgECDSASHA256: {hash: crypto.SHA256, ecdsa: true},
	AlgECDSASHA384: {hash: crypto.SHA384, ecdsa: true},
	AlgECDSASHA512: {hash: crypto.SHA512, ecdsa: true},
}

var oaepHashes = map[string]crypto.Hash{AlgRSAOAEPSHA1: crypto.SHA1, AlgRSAOAEPSHA256: crypto.SHA256}

// generatePair makes an RSA or ECC key pair: PKCS#8 DER private key and
// PKIX (SubjectPublicKeyInfo) DER public key.
func generatePair(random io.Reader, info specInfo) (privDER, pubDER []byte, err error) {
	var priv crypto.Signer
	switch info.kind {
	case kindRSA:
		priv, err = rsa.GenerateKey(random, info.bits)
	case kindECC:
		priv, err = ecdsa.GenerateKey(info.curve, random)
	default:
		return nil, nil, fmt.Errorf("keycrypto: not an asymmetric key spec")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("keycrypto: key generation: %w", err)
	}
	if privDER, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
		return nil, nil, err
	}
	if pubDER, err = x509.MarshalPKIXPublicKey(priv.Public()); err != nil {
		clear(privDER)
		return nil, nil, err
	}
	return privDER, pubDER, nil
}

// KeyPairSpecs are the key pair specs GenerateDataKeyPair makes.
var KeyPairSpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}

// GenerateKeyPair makes a data key pair for GenerateDataKeyPair: the
// private key as PKCS#8 DER and the public key as SubjectPublicKeyInfo DER.
func GenerateKeyPair(random io.Reader, spec string) (privDER, pubDER []byte, err error) {
	info, ok := specs[spec]
	if !ok || (info.kind != kindRSA && info.kind != kindECC) {
		return nil, nil, fmt.Errorf("KeyPairSpec %s is not supported; use one of %v", spec, KeyPairSpecs)
	}
	return generatePair(random, info)
}

// AsymmetricKey is the parsed private key of one version of an RSA or ECC
// key, with its public key. Parsing is slow for RSA, so Cache keeps them.
type AsymmetricKey struct {
	spec   string
	info   specInfo
	priv   crypto.Signer
	pubDER []byte
}

// ParseAsymmetricKey parses PKCS#8 DER material of a key of the given spec;
// material of another kind or size than the spec says is an error.
func ParseAsymmetricKey(spec string, der []byte) (*AsymmetricKey, error) {
	info, ok := specs[spec]
	if !ok || (info.kind != kindRSA && info.kind != kindECC) {
		return nil, fmt.Errorf("keycrypto: %s is not an asymmetric key spec", spec)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keycrypto: private key does not parse")
	}
	var priv crypto.Signer
	switch p := k.(type) {
	case *rsa.PrivateKey:
		if info.kind != kindRSA || p.N.BitLen() != info.bits {
			return nil, fmt.Errorf("keycrypto: private key does not match %s", spec)
		}
		priv = p
	case *ecdsa.PrivateKey:
		if info.kind != kindECC || p.Curve != info.curve {
			return nil, fmt.Errorf("keycrypto: private key does not match %s", spec)
		}
		priv = p
	default:
		return nil, fmt.Errorf("keycrypto: private key does not match %s", spec)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return &AsymmetricKey{spec: spec, info: info, priv: priv, pubDER: pub}, nil
}

// Spec is the key spec of the key.
func (k *AsymmetricKey) Spec() string { return k.spec }

// PublicKeyDER is the public key as DER SubjectPublicKeyInfo, as
// GetPublicKey returns it. The caller must not change it.
func (k *AsymmetricKey) PublicKeyDER() []byte { return k.pubDER }

// signingAlg checks a signing algorithm against the key: RSA keys take
// the RSASSA algorithms, an ECC key only the ECDSA one of its curve.
func (k *AsymmetricKey) signingAlg(algorithm string) (signingAlg, error) {
	a, ok := signingAlgs[algorithm]
	if !ok || a.ecdsa != (k.info.kind == kindECC) || (a.ecdsa && a.hash != k.info.hash) {
		return a, fmt.Errorf("%w: SigningAlgorithm %s is not valid for %s; use one of %v",
			ErrAlgorithm, algorithm, k.spec, SigningAlgorithms(k.spec, UsageSignVerify))
	}
	return a, nil
}

// Digest is the digest Sign and Verify work on: the message hashed with the
// algorithm's hash for RAW (at most 4096 bytes), or the message itself for
// DIGEST, which must then be exactly as long as the hash.
func Digest(h crypto.Hash, messageType string, message []byte) ([]byte, error) {
	switch messageType {
	case "", MessageRaw:
		if len(message) == 0 || len(message) > MaxSignMessage {
			return nil, fmt.Errorf("%w: a RAW message must be 1 to %d bytes", ErrMessage, MaxSignMessage)
		}
		d := h.New()
		d.Write(message)
		return d.Sum(nil), nil
	case MessageDigest:
		if len(message) != h.Size() {
			return nil, fmt.Errorf("%w: a DIGEST message for this algorithm must be %d bytes, not %d", ErrMessage, h.Size(), len(message))
		}
		return message, nil
	}
	return nil, fmt.Errorf("%w: MessageType must be RAW or DIGEST", ErrMessage)
}

func (k *AsymmetricKey) digest(algorithm, messageType string, message []byte) (signingAlg, []byte, error) {
	a, err := k.signingAlg(algorithm)
	if err != nil {
		return a, nil, err
	}
	d, err := Digest(a.hash, messageType, message)
	return a, d, err
}

// Sign signs a message: RSASSA-PSS with a salt as long as the hash,
// RSASSA-PKCS1-v1_5, or ECDSA with a DER-encoded (r, s) signature, as AWS
// KMS signs.
func (k *AsymmetricKey) Sign(random io.Reader, algorithm, messageType string, message []byte) ([]byte, error) {
	a, d, err := k.digest(algorithm, messageType, message)
	if err != nil {
		return nil, err
	}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		if a.pss {
			return rsa.SignPSS(random, p, a.hash, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(random, p, a.hash, d)
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(random, p, d)
	}
	return nil, fmt.Errorf("keycrypto: unknown private key type")
}

// Verify checks a signature made by Sign (or by anyone holding the private
// key with the same algorithm). A signature that does not verify is
// ErrInvalidSignature; a bad algorithm or message is ErrAlgorithm or
// ErrMessage.
func (k *AsymmetricKey) Verify(algorithm, messageType string, message, signature []byte) error {
	a, d, err := k.digest(algorithm, messageType, message)
	if err != nil {
		return err
	}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		if a.pss {
			// Any salt length verifies, as with openssl's default
			// (-sigopt rsa_pss_saltlen:auto).
			err = rsa.VerifyPSS(&p.PublicKey, a.hash, d, signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(&p.PublicKey, a.hash, d, signature)
		}
	case *ecdsa.PrivateKey:
		if !ecdsa.VerifyASN1(&p.PublicKey, d, signature) {
			err = ErrInvalidSignature
		}
	}
	if err != nil {
		return ErrInvalidSignature
	}
	return nil
}

func (k *AsymmetricKey) oaep(algorithm string) (crypto.Hash, *rsa.PrivateKey, error) {
	h, ok := oaepHashes[algorithm]
	p, isRSA := k.priv.(*rsa.PrivateKey)
	if !ok || !isRSA {
		return 0, nil, fmt.Errorf("%w: EncryptionAlgorithm %s is not valid for %s; use one of %v",
			ErrAlgorithm, algorithm, k.spec, EncryptionAlgorithms(k.spec, UsageEncryptDecrypt))
	}
	return h, p, nil
}

// MaxOAEPPlaintext is the largest plaintext RSA-OAEP with the algorithm
// encrypts under the key (k - 2·hLen - 2 bytes), or 0 for a wrong algorithm.
func (k *AsymmetricKey) MaxOAEPPlaintext(algorithm string) int {
	h, p, err := k.oaep(algorithm)
	if err != nil {
		return 0
	}
	return p.Size() - 2*h.Size() - 2
}

// Encrypt encrypts with RSAES-OAEP (MGF1 with the same hash, no label), as
// AWS KMS does: the ciphertext is the raw RSA-OAEP output, decryptable by
// anyone's OAEP implementation with the private key.
func (k *AsymmetricKey) Encrypt(random io.Reader, algorithm string, plaintext []byte) ([]byte, error) {
	h, p, err := k.oaep(algorithm)
	if err != nil {
		return nil, err
	}
	if max := p.Size() - 2*h.Size() - 2; len(plaintext) == 0 || len(plaintext) > max {
		return nil, fmt.Errorf("%w: plaintext for %s with %s must be 1 to %d bytes", ErrMessage, k.spec, algorithm, max)
	}
	return rsa.EncryptOAEP(h.New(), random, &p.PublicKey, plaintext, nil)
}

// Decrypt decrypts an RSAES-OAEP ciphertext made under the public key. Any
// ciphertext that does not decrypt is ErrInvalidCiphertext.
func (k *AsymmetricKey) Decrypt(algorithm string, ciphertext []byte) ([]byte, error) {
	h, p, err := k.oaep(algorithm)
	if err != nil {
		return nil, err
	}
	pt, err := rsa.DecryptOAEP(h.New(), nil, p, ciphertext, nil)
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return pt, nil
}
