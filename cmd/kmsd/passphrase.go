package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/scrypt"
)

// A root-key file may be sealed under a passphrase (kmsd seal-root-key;
// kmsd serve --root-key-passphrase-file): the plain root-key file's bytes
// are encrypted with AES-256-GCM under a key derived from the passphrase by
// scrypt. scrypt rather than argon2id: both are in golang.org/x/crypto,
// scrypt's one call takes its whole cost as parameters that the file
// carries, and it is what Go's own documentation recommends for this. A
// copied disk or backup then holds no usable root key without the
// passphrase, which comes from another place (a secret mount, a tmpfs).

// sealedRootKeyHeader starts a sealed root-key file; it is the GCM
// additional data, so the parameters it names cannot be changed.
const sealedRootKeyHeader = "raftkms sealed root key v1: scrypt N=32768 r=8 p=1, AES-256-GCM\n"

const (
	scryptN, scryptR, scryptP = 1 << 15, 8, 1
	saltSize                  = 16
)

// errSealedRootKey is reading a sealed root-key file without a passphrase.
var errSealedRootKey = errors.New("the root key file is sealed under a passphrase: give --root-key-passphrase-file")

func passphraseKey(pass, salt []byte) (cipher.AEAD, error) {
	key, err := scrypt.Key(pass, salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealRootKeyFile encrypts a plain root-key file's bytes under pass.
func sealRootKeyFile(plain, pass []byte, random io.Reader) ([]byte, error) {
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(random, salt); err != nil {
		return nil, err
	}
	aead, err := passphraseKey(pass, salt)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, err
	}
	body := append(append(salt, nonce...), aead.Seal(nil, nonce, plain, []byte(sealedRootKeyHeader))...)
	return []byte(sealedRootKeyHeader + base64.StdEncoding.EncodeToString(body) + "\n"), nil
}

// isSealedRootKeyFile reports whether data is a sealed root-key file.
func isSealedRootKeyFile(data []byte) bool {
	return bytes.HasPrefix(data, []byte(sealedRootKeyHeader))
}

// openSealedRootKeyFile decrypts a sealed root-key file; a wrong passphrase
// and a damaged file are one error (GCM cannot tell them apart).
func openSealedRootKeyFile(data, pass []byte) ([]byte, error) {
	body, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data[len(sealedRootKeyHeader):])))
	if err != nil || len(body) < saltSize+12+16 {
		return nil, errors.New("the sealed root key file is damaged")
	}
	aead, err := passphraseKey(pass, body[:saltSize])
	if err != nil {
		return nil, err
	}
	nonce := body[saltSize : saltSize+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, body[saltSize+aead.NonceSize():], []byte(sealedRootKeyHeader))
	if err != nil {
		return nil, errors.New("the passphrase does not open the sealed root key file (wrong passphrase, or the file is damaged)")
	}
	return plain, nil
}

// readPassphraseFile reads a passphrase: the file's bytes without one
// trailing newline; an empty passphrase is refused.
func readPassphraseFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	raw = bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
	if len(raw) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return raw, nil
}

// runSealRootKey writes a root-key file sealed under a passphrase.
func runSealRootKey(args []string) int {
	fs := flag.NewFlagSet("kmsd seal-root-key", flag.ContinueOnError)
	var (
		in   = fs.String("root-key-file", "", "the plain root key file (from kmsd gen-root-key)")
		pass = fs.String("passphrase-file", "", "file holding the passphrase")
		out  = fs.String("out", "", "where to write the sealed root key file (never overwritten)")
	)
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	if *in == "" || *pass == "" || *out == "" {
		return usageErr(errors.New("--root-key-file, --passphrase-file and --out are required"))
	}
	root, _, err := readRootKeyFile(*in, "")
	if err != nil {
		return fail(err)
	}
	plain, err := os.ReadFile(*in)
	if err != nil {
		return fail(err)
	}
	defer clear(plain)
	p, err := readPassphraseFile(*pass)
	if err != nil {
		return fail(err)
	}
	defer clear(p)
	sealed, err := sealRootKeyFile(plain, p, rand.Reader)
	if err != nil {
		return fail(err)
	}
	if err := writeRootKeyFile(*out, sealed); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "kmsd: root key %s sealed into %s\n", root.ID(), *out)
	return 0
}
