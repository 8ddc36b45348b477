package keycrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ImportedMaterialSize is the size of symmetric key material users import
// (a 256-bit AES key).
const ImportedMaterialSize = 32

// Wrapping algorithms of GetParametersForImport, as AWS KMS names them.
const (
	WrapRSAESOAEPSHA256     = "RSAES_OAEP_SHA_256"
	WrapRSAESOAEPSHA1       = "RSAES_OAEP_SHA_1"
	WrapRSAAESKeyWrapSHA256 = "RSA_AES_KEY_WRAP_SHA_256"
	WrapRSAAESKeyWrapSHA1   = "RSA_AES_KEY_WRAP_SHA_1"
)

// WrappingKeyBits is the RSA size of each wrapping key spec.
var WrappingKeyBits = map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}

// GenerateWrappingKey makes an RSA key pair for an import. It returns the
// public key as PKIX DER (what GetParametersForImport hands out) and the
// private key as PKCS#8 DER (to be sealed under the root key).
func GenerateWrappingKey(random io.Reader, spec string) (*rsa.PrivateKey, []byte, []byte, error) {
	bits, ok := WrappingKeyBits[spec]
	if !ok {
		return nil, nil, nil, fmt.Errorf("WrappingKeySpec %q is not supported; use RSA_2048, RSA_3072 or RSA_4096", spec)
	}
	priv, err := rsa.GenerateKey(random, bits)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, nil, err
	}
	return priv, pub, der, nil
}

func oaepHash(algorithm string) (hash.Hash, bool, error) {
	switch algorithm {
	case WrapRSAESOAEPSHA256:
		return sha256.New(), false, nil
	case WrapRSAESOAEPSHA1:
		return sha1.New(), false, nil
	case WrapRSAAESKeyWrapSHA256:
		return sha256.New(), true, nil
	case WrapRSAAESKeyWrapSHA1:
		return sha1.New(), true, nil
	}
	return nil, false, fmt.Errorf("wrapping algorithm %q is not supported", algorithm)
}

// UnwrapKeyMaterial recovers imported key material. The RSAES_OAEP
// algorithms carry the material RSA-OAEP encrypted; the RSA_AES_KEY_WRAP
// algorithms carry an RSA-OAEP encrypted ephemeral AES key followed by the
// material wrapped under it with AES key wrap with padding (RFC 5649), as
// `openssl pkeyutl` and `openssl enc -id-aes256-wrap-pad` produce them.
func UnwrapKeyMaterial(privDER []byte, algorithm string, wrapped []byte) ([]byte, error) {
	return UnwrapKeyMaterialFor(privDER, algorithm, SpecSymmetric, wrapped)
}

// UnwrapKeyMaterialFor is UnwrapKeyMaterial for a key of the given spec:
// the material must have a length the spec allows (CheckImportedMaterial),
// 32 bytes for SYMMETRIC_DEFAULT and the AWS KMS bounds for HMAC specs.
func UnwrapKeyMaterialFor(privDER []byte, algorithm, spec string, wrapped []byte) ([]byte, error) {
	h, hybrid, err := oaepHash(algorithm)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(privDER)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapping key: %v", ErrUnwrap, err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: wrapping key is not RSA", ErrUnwrap)
	}
	var material []byte
	if !hybrid {
		if material, err = rsa.DecryptOAEP(h, nil, priv, wrapped, nil); err != nil {
			return nil, ErrUnwrap
		}
	} else {
		n := priv.Size()
		if len(wrapped) <= n {
			return nil, ErrUnwrap
		}
		kek, err := rsa.DecryptOAEP(h, nil, priv, wrapped[:n], nil)
		if err != nil {
			return nil, ErrUnwrap
		}
		material, err = UnwrapKWP(kek, wrapped[n:])
		clear(kek)
		if err != nil {
			return nil, err
		}
	}
	if err := CheckImportedMaterial(spec, material); err != nil {
		clear(material)
		return nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	return material, nil
}

// WrapKeyMaterial wraps material for import with a wrapping public key (PKIX
// DER), the inverse of UnwrapKeyMaterial. Tests and Go users use it; the
// README shows the same with openssl.
func WrapKeyMaterial(random io.Reader, pubDER []byte, algorithm string, material []byte) ([]byte, error) {
	h, hybrid, err := oaepHash(algorithm)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("wrapping key is not RSA")
	}
	if !hybrid {
		return rsa.EncryptOAEP(h, random, pub, material, nil)
	}
	kek, err := RandomBytes(random, 32)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	head, err := rsa.EncryptOAEP(h, random, pub, kek, nil)
	if err != nil {
		return nil, err
	}
	tail, err := WrapKWP(kek, material)
	if err != nil {
		return nil, err
	}
	return append(head, tail...), nil
}

// kwpIV is the alternative initial value of RFC 5649.
var kwpIV = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// WrapKWP is AES key wrap with padding (RFC 5649).
func WrapKWP(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || uint64(len(plaintext)) > 1<<32-1 {
		return nil, errors.New("keycrypto: key wrap input must be 1 to 2^32-1 bytes")
	}
	n := (len(plaintext) + 7) / 8
	var a [8]byte
	copy(a[:], kwpIV[:])
	binary.BigEndian.PutUint32(a[4:], uint32(len(plaintext)))
	r := make([]byte, 8+n*8)
	copy(r[8:], plaintext)
	if n == 1 {
		copy(r, a[:])
		block.Encrypt(r, r)
		return r, nil
	}
	var b [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(b[:8], a[:])
			copy(b[8:], r[i*8:i*8+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^t)
			copy(r[i*8:], b[8:])
		}
	}
	copy(r, a[:])
	return r, nil
}

// UnwrapKWP undoes WrapKWP, checking the integrity value and the padding.
func UnwrapKWP(kek, wrapped []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, ErrUnwrap
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 {
		return nil, ErrUnwrap
	}
	n := len(wrapped)/8 - 1
	var a [8]byte
	r := make([]byte, len(wrapped))
	copy(r, wrapped)
	if n == 1 {
		block.Decrypt(r, r)
		copy(a[:], r[:8])
	} else {
		copy(a[:], r[:8])
		var b [16]byte
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(b[8:], r[i*8:i*8+8])
				block.Decrypt(b[:], b[:])
				copy(a[:], b[:8])
				copy(r[i*8:], b[8:])
			}
		}
	}
	mli := int(binary.BigEndian.Uint32(a[4:]))
	ok := subtle.ConstantTimeCompare(a[:4], kwpIV[:]) == 1 && mli > 8*(n-1) && mli <= 8*n &&
		bytes.Count(r[8+mli:], []byte{0}) == len(r)-8-mli
	if !ok {
		clear(r)
		return nil, ErrUnwrap
	}
	out := make([]byte, mli)
	copy(out, r[8:8+mli])
	clear(r)
	return out, nil
}
