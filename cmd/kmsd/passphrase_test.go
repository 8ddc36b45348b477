package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkms/raftkms/keycrypto"
)

// TestSealedRootKeyFile: seal-root-key writes a file that readRootKeyFile
// opens with the right passphrase only, to the same root key; the sealed
// file holds neither the key nor its base64 form.
func TestSealedRootKeyFile(t *testing.T) {
	dir := t.TempDir()
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	plainPath := filepath.Join(dir, "root.key")
	plain := keycrypto.EncodeRootKey(root)
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("root.key", string(plain))
	pass := write("pass", "correct horse battery staple\n")
	wrong := write("wrong", "correct horse battery stapler\n")
	empty := write("empty", "\n")
	sealedPath := filepath.Join(dir, "root.key.sealed")

	if code := runSealRootKey([]string{"--root-key-file", plainPath, "--passphrase-file", pass, "--out", sealedPath}); code != 0 {
		t.Fatalf("seal-root-key exited %d", code)
	}
	sealed, err := os.ReadFile(sealedPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), strings.TrimSpace(string(plain))) {
		t.Fatal("the sealed file holds the root key in the clear")
	}
	if st, _ := os.Stat(sealedPath); st.Mode().Perm() != 0o600 {
		t.Fatalf("sealed file mode %v, want 0600", st.Mode().Perm())
	}
	got, _, err := readRootKeyFile(sealedPath, pass)
	if err != nil || got.ID() != root.ID() {
		t.Fatalf("opening with the passphrase: %v (ID %v, want %s)", err, got, root.ID())
	}
	for _, c := range []struct {
		name, path, pass, want string
	}{
		{"no passphrase", sealedPath, "", "--root-key-passphrase-file"},
		{"wrong passphrase", sealedPath, wrong, "wrong passphrase"},
		{"empty passphrase", sealedPath, empty, "is empty"},
		{"passphrase for a plain file", plainPath, pass, "not sealed"},
	} {
		if _, _, err := readRootKeyFile(c.path, c.pass); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	// Never overwritten.
	if code := runSealRootKey([]string{"--root-key-file", plainPath, "--passphrase-file", pass, "--out", sealedPath}); code == 0 {
		t.Fatal("seal-root-key overwrote an existing file")
	}
	// A flipped byte in the sealed body is refused.
	bad := []byte(string(sealed))
	bad[len(sealedRootKeyHeader)+10] ^= 1
	badPath := write("bad.sealed", string(bad))
	if _, _, err := readRootKeyFile(badPath, pass); err == nil {
		t.Fatal("a damaged sealed file opened")
	}
}
