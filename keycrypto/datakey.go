package keycrypto

import (
	"fmt"
	"io"
)

// MaxDataKeyBytes is the largest data key GenerateDataKey makes (as AWS KMS).
const MaxDataKeyBytes = 1024

// DataKeyLength is the length of a data key given as a key spec (AES_128,
// AES_256) or a number of bytes (1..1024). Exactly one must be given.
func DataKeyLength(spec string, numberOfBytes int) (int, error) {
	switch {
	case spec != "" && numberOfBytes != 0:
		return 0, fmt.Errorf("give KeySpec or NumberOfBytes, not both")
	case spec == "AES_128":
		return 16, nil
	case spec == "AES_256":
		return 32, nil
	case spec != "":
		return 0, fmt.Errorf("KeySpec %q is not supported; use AES_128 or AES_256", spec)
	case numberOfBytes == 0:
		return 0, fmt.Errorf("KeySpec or NumberOfBytes is required")
	case numberOfBytes < 1 || numberOfBytes > MaxDataKeyBytes:
		return 0, fmt.Errorf("NumberOfBytes must be between 1 and %d", MaxDataKeyBytes)
	}
	return numberOfBytes, nil
}

// RandomBytes reads n random bytes.
func RandomBytes(random io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(random, b); err != nil {
		return nil, fmt.Errorf("keycrypto: no randomness: %w", err)
	}
	return b, nil
}
