package fsm

import "slices"

// keySpecUsages are the key specs the state machine accepts, each with its
// allowed key usages (AWS KMS's rules). The rpc layer checks requests with
// keycrypto's richer table first; this copy keeps Apply deterministic and
// independent of it, so a malformed event is rejected the same way on every
// node of every build.
var keySpecUsages = map[string][]string{
	DefaultKeySpec:  {DefaultKeyUsage},
	"RSA_2048":      {"ENCRYPT_DECRYPT", "SIGN_VERIFY"},
	"RSA_3072":      {"ENCRYPT_DECRYPT", "SIGN_VERIFY"},
	"RSA_4096":      {"ENCRYPT_DECRYPT", "SIGN_VERIFY"},
	"ECC_NIST_P256": {"SIGN_VERIFY"},
	"ECC_NIST_P384": {"SIGN_VERIFY"},
	"ECC_NIST_P521": {"SIGN_VERIFY"},
	"HMAC_224":      {"GENERATE_VERIFY_MAC"},
	"HMAC_256":      {"GENERATE_VERIFY_MAC"},
	"HMAC_384":      {"GENERATE_VERIFY_MAC"},
	"HMAC_512":      {"GENERATE_VERIFY_MAC"},
}

// validKeySpec reports whether a key spec and usage go together.
func validKeySpec(spec, usage string) bool {
	return slices.Contains(keySpecUsages[spec], usage)
}

// IsSymmetric reports whether a key is a SYMMETRIC_DEFAULT key (the only
// kind that rotates, and the only kind that may be a managed key).
func (k *Key) IsSymmetric() bool { return k.KeySpec == DefaultKeySpec || k.KeySpec == "" }

// isHMAC reports whether a key spec is an HMAC spec.
func isHMAC(spec string) bool {
	return slices.Contains(keySpecUsages[spec], "GENERATE_VERIFY_MAC")
}
