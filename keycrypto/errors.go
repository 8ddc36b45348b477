package keycrypto

import (
	"errors"
	"fmt"
)

// Sentinel errors. Messages never carry key material or plaintext.
var (
	// ErrInvalidCiphertext is any ciphertext blob that cannot be opened:
	// malformed, truncated, tampered with, or with the wrong encryption
	// context. The API answers it with InvalidCiphertextException.
	ErrInvalidCiphertext = errors.New("ciphertext is not valid")
	// ErrUnsupportedFormat is a blob with a format byte this build does not
	// know (too new, or not a raftkms ciphertext). It wraps ErrInvalidCiphertext.
	ErrUnsupportedFormat = errors.New("ciphertext format is not supported")
	// ErrInvalidRootKey is a root key file that is not 32 bytes (raw or base64).
	ErrInvalidRootKey = errors.New("root key must be 32 bytes, raw or base64")
	// ErrSealed is sealed material that does not open under this root key
	// for the key ID and version it claims: corruption, or the wrong root key.
	ErrSealed = errors.New("sealed material does not open under this root key")
	// ErrWrongRootKey is a sealed blob that names another root key than the
	// one this node holds: the node was started with the wrong root key file.
	// Errors that match it also match ErrSealed, and their message names both
	// root-key IDs (never key bytes).
	ErrWrongRootKey = errors.New("sealed under a different root key")
	// ErrUnwrap is imported key material that cannot be unwrapped with the
	// import parameters.
	ErrUnwrap = errors.New("wrapped key material cannot be unwrapped")
)

// wrongRootKeyError is ErrWrongRootKey with the two root-key IDs.
type wrongRootKeyError struct{ sealed, held string }

func (e *wrongRootKeyError) Error() string {
	return fmt.Sprintf("sealed under root key %s, but this node holds root key %s", e.sealed, e.held)
}

func (e *wrongRootKeyError) Is(target error) bool {
	return target == ErrWrongRootKey || target == ErrSealed
}
