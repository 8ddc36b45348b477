package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/raftnode"
)

// writeRootKeyFile creates path with mode 0600 and writes data to it. It
// never replaces an existing file: overwriting a root key would leave every
// node that holds the old one unable to open its data.
func writeRootKeyFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; a root key file is never overwritten", path)
	}
	if err != nil {
		return err
	}
	// The umask may take bits away, never add them: make sure it is 0600.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// maxRootKeyFile bounds what is read as a root key file (a key is 44
// base64 characters and a newline, or 32 raw bytes; a keyring line with
// its ID is 62 bytes, so dozens of keys fit).
const maxRootKeyFile = 4096

// readRootKeyFile reads the root key and the mode of the file it was read
// from (one open file, so the mode is that of the bytes read). A file sealed
// under a passphrase (passphrase.go) needs passFile.
func readRootKeyFile(path, passFile string) (*keycrypto.RootKey, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the root key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("reading the root key: %w", err)
	}
	if st.Size() > maxRootKeyFile {
		return nil, 0, fmt.Errorf("root key file %s: %d bytes is too long for a root key", path, st.Size())
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxRootKeyFile))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the root key: %w", err)
	}
	defer clear(raw)
	switch {
	case isSealedRootKeyFile(raw) && passFile == "":
		return nil, 0, fmt.Errorf("root key file %s: %w", path, errSealedRootKey)
	case isSealedRootKeyFile(raw):
		pass, err := readPassphraseFile(passFile)
		if err != nil {
			return nil, 0, err
		}
		defer clear(pass)
		plain, err := openSealedRootKeyFile(raw, pass)
		if err != nil {
			return nil, 0, fmt.Errorf("root key file %s: %w", path, err)
		}
		defer clear(plain)
		raw = plain
	case passFile != "":
		return nil, 0, fmt.Errorf("root key file %s is not sealed under a passphrase, but --root-key-passphrase-file was given", path)
	}
	root, err := keycrypto.ParseRootKey(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("root key file %s: %w", path, err)
	}
	return root, st.Mode(), nil
}

// logRootKeyFile names the root key a node runs with (its ID, never the
// key) and warns when its file is open to group or others.
func logRootKeyFile(log hclog.Logger, path string, mode fs.FileMode, root *keycrypto.RootKey) {
	if mode.Perm()&0o077 != 0 {
		log.Warn("root key file is readable or writable by group or others; anyone who can read it can unseal every key: chmod 600 it",
			"file", path, "mode", fmt.Sprintf("%#o", mode.Perm()))
	}
	if ids := root.KeyIDs(); len(ids) > 1 {
		log.Info("root keyring loaded", "file", path, "root_key_ids", strings.Join(ids, ","), "sealing_root_key_id", root.SealingKeyID())
		return
	}
	log.Info("root key loaded", "file", path, "root_key_id", root.ID())
}

// openRestore reads and checks a --restore snapshot file (nil for "").
func openRestore(path string) (*raftnode.Backup, error) {
	if path == "" {
		return nil, nil
	}
	b, err := raftnode.OpenBackup(path)
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	return b, nil
}
