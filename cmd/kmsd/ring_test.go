package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkms/raftkms/keycrypto"
)

// TestRootKeyRingFile: a root keyring file (two `kmsd gen-root-key` keys
// one after the other), plain or sealed under a passphrase, reads as the
// ring with the last key sealing.
func TestRootKeyRingFile(t *testing.T) {
	dir := t.TempDir()
	var keys []*keycrypto.RootKey
	var text []byte
	for range 2 {
		k, err := keycrypto.GenerateRootKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		text = append(text, keycrypto.EncodeRootKey(k)...)
	}
	plainPath := filepath.Join(dir, "ring.key")
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(plainPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte("a long enough passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sealedPath := filepath.Join(dir, "ring.key.sealed")
	if code := runSealRootKey([]string{"--root-key-file", plainPath, "--passphrase-file", pass, "--out", sealedPath}); code != 0 {
		t.Fatalf("seal-root-key exited %d", code)
	}
	want := keys[0].ID() + "," + keys[1].ID()
	for _, c := range []struct{ path, pass string }{{plainPath, ""}, {sealedPath, pass}} {
		got, _, err := readRootKeyFile(c.path, c.pass)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if ids := strings.Join(got.KeyIDs(), ","); ids != want || got.SealingKeyID() != keys[1].ID() {
			t.Fatalf("%s: ring %s sealing under %s, want %s sealing under %s", c.path, ids, got.SealingKeyID(), want, keys[1].ID())
		}
	}
}
