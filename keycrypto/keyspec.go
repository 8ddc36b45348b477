package keycrypto

import (
	"crypto"
	"crypto/elliptic"
	"fmt"
	"io"
	"slices"
	"sort"
)

// Key specs, usages and algorithms, spelled as AWS KMS spells them.
const (
	SpecSymmetric = "SYMMETRIC_DEFAULT"

	UsageEncryptDecrypt    = "ENCRYPT_DECRYPT"
	UsageSignVerify        = "SIGN_VERIFY"
	UsageGenerateVerifyMAC = "GENERATE_VERIFY_MAC"
)

// specKind says what kind of material a key spec has.
type specKind int

const (
	kindSymmetric specKind = iota
	kindRSA
	kindECC
	kindHMAC
)

// specInfo is everything raftkms needs to know about one key spec.
type specInfo struct {
	kind   specKind
	bits   int            // RSA modulus size
	curve  elliptic.Curve // ECC curve
	hash   crypto.Hash    // HMAC hash, or the one ECDSA hash AWS allows for the curve
	usages []string       // allowed KeyUsage values, the default first
	// HMAC key lengths in bytes: what raftkms generates, and the bounds of
	// imported material (AWS KMS's).
	macLen, macMin, macMax int
}

var specs = map[string]specInfo{
	SpecSymmetric:   {kind: kindSymmetric, usages: []string{UsageEncryptDecrypt}},
	"RSA_2048":      {kind: kindRSA, bits: 2048, usages: []string{UsageEncryptDecrypt, UsageSignVerify}},
	"RSA_3072":      {kind: kindRSA, bits: 3072, usages: []string{UsageEncryptDecrypt, UsageSignVerify}},
	"RSA_4096":      {kind: kindRSA, bits: 4096, usages: []string{UsageEncryptDecrypt, UsageSignVerify}},
	"ECC_NIST_P256": {kind: kindECC, curve: elliptic.P256(), hash: crypto.SHA256, usages: []string{UsageSignVerify}},
	"ECC_NIST_P384": {kind: kindECC, curve: elliptic.P384(), hash: crypto.SHA384, usages: []string{UsageSignVerify}},
	"ECC_NIST_P521": {kind: kindECC, curve: elliptic.P521(), hash: crypto.SHA512, usages: []string{UsageSignVerify}},
	"HMAC_224":      {kind: kindHMAC, hash: crypto.SHA224, usages: []string{UsageGenerateVerifyMAC}, macLen: 28, macMin: 28, macMax: 64},
	"HMAC_256":      {kind: kindHMAC, hash: crypto.SHA256, usages: []string{UsageGenerateVerifyMAC}, macLen: 32, macMin: 32, macMax: 64},
	"HMAC_384":      {kind: kindHMAC, hash: crypto.SHA384, usages: []string{UsageGenerateVerifyMAC}, macLen: 48, macMin: 48, macMax: 128},
	"HMAC_512":      {kind: kindHMAC, hash: crypto.SHA512, usages: []string{UsageGenerateVerifyMAC}, macLen: 64, macMin: 64, macMax: 128},
}

// KeySpecs lists every key spec raftkms supports, sorted.
func KeySpecs() []string {
	out := make([]string, 0, len(specs))
	for s := range specs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// CheckKeySpec validates a (KeySpec, KeyUsage) pair of CreateKey and fills
// in the defaults: SYMMETRIC_DEFAULT, and the spec's first usage
// (ENCRYPT_DECRYPT for symmetric and RSA keys, as AWS KMS; an ECC or HMAC
// key has only one usage, so it may be left out too).
func CheckKeySpec(spec, usage string) (string, string, error) {
	if spec == "" {
		spec = SpecSymmetric
	}
	info, ok := specs[spec]
	if !ok {
		return "", "", fmt.Errorf("KeySpec %s is not supported; use one of %v", spec, KeySpecs())
	}
	if usage == "" {
		usage = info.usages[0]
	}
	if !slices.Contains(info.usages, usage) {
		return "", "", fmt.Errorf("KeyUsage %s is not valid for KeySpec %s; use one of %v", usage, spec, info.usages)
	}
	return spec, usage, nil
}

// IsSymmetric reports whether keys of this spec encrypt with the raftkms
// ciphertext format (SYMMETRIC_DEFAULT).
func IsSymmetric(spec string) bool { return spec == "" || spec == SpecSymmetric }

// IsAsymmetric reports whether keys of this spec are RSA or ECC key pairs.
func IsAsymmetric(spec string) bool {
	k := specs[spec].kind
	return k == kindRSA || k == kindECC
}

// IsHMAC reports whether keys of this spec are HMAC keys.
func IsHMAC(spec string) bool { return specs[spec].kind == kindHMAC }

// EncryptionAlgorithms are the encryption algorithms of a key, as
// DescribeKey and GetPublicKey list them (none for other usages).
func EncryptionAlgorithms(spec, usage string) []string {
	if usage != UsageEncryptDecrypt {
		return nil
	}
	switch specs[spec].kind {
	case kindSymmetric:
		return []string{SpecSymmetric}
	case kindRSA:
		return []string{AlgRSAOAEPSHA1, AlgRSAOAEPSHA256}
	}
	return nil
}

// SigningAlgorithms are the signing algorithms of a SIGN_VERIFY key.
func SigningAlgorithms(spec, usage string) []string {
	if usage != UsageSignVerify {
		return nil
	}
	info := specs[spec]
	switch info.kind {
	case kindRSA:
		return []string{AlgPSSSHA256, AlgPSSSHA384, AlgPSSSHA512, AlgPKCS1SHA256, AlgPKCS1SHA384, AlgPKCS1SHA512}
	case kindECC:
		for name, a := range signingAlgs {
			if a.ecdsa && a.hash == info.hash {
				return []string{name}
			}
		}
	}
	return nil
}

// MACAlgorithms are the MAC algorithms of an HMAC key (exactly one, the
// hash of its spec, as AWS KMS).
func MACAlgorithms(spec string) []string {
	info := specs[spec]
	if info.kind != kindHMAC {
		return nil
	}
	for name, h := range macAlgs {
		if h == info.hash {
			return []string{name}
		}
	}
	return nil
}

// GenerateKeyMaterial makes the material of a new key version of the spec:
// 32 random bytes for SYMMETRIC_DEFAULT, a PKCS#8 DER private key for RSA
// and ECC specs, random HMAC key bytes of the spec's length for HMAC specs.
// The caller seals it at once and clears it.
func GenerateKeyMaterial(random io.Reader, spec string) ([]byte, error) {
	info, ok := specs[spec]
	if !ok {
		return nil, fmt.Errorf("keycrypto: KeySpec %s is not supported", spec)
	}
	switch info.kind {
	case kindSymmetric:
		return RandomBytes(random, 32)
	case kindHMAC:
		return RandomBytes(random, info.macLen)
	}
	priv, _, err := generatePair(random, info)
	return priv, err
}

// CheckImportedMaterial checks the length of imported key material for a
// key spec: 32 bytes for SYMMETRIC_DEFAULT, the spec's bounds for HMAC keys.
// Importing RSA or ECC private keys is not supported.
func CheckImportedMaterial(spec string, material []byte) error {
	info, ok := specs[spec]
	switch {
	case !ok:
		return fmt.Errorf("KeySpec %s is not supported", spec)
	case info.kind == kindSymmetric:
		if len(material) != ImportedMaterialSize {
			return fmt.Errorf("symmetric key material must be %d bytes", ImportedMaterialSize)
		}
	case info.kind == kindHMAC:
		if len(material) < info.macMin || len(material) > info.macMax {
			return fmt.Errorf("%s key material must be %d to %d bytes", spec, info.macMin, info.macMax)
		}
	default:
		return fmt.Errorf("importing %s key material is not supported", spec)
	}
	return nil
}
