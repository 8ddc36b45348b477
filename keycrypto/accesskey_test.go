package keycrypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestAccessKeys(t *testing.T) {
	id, secret, err := NewAccessKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != AccessKeyIDLen || len(secret) != AccessKeySecretLen || !ValidAccessKeyID(id) {
		t.Fatalf("access key %q (%d) secret of %d characters", id, len(id), len(secret))
	}
	id2, secret2, _ := NewAccessKey(rand.Reader)
	if id2 == id || secret2 == secret {
		t.Fatal("two access keys are the same")
	}
	for _, bad := range []string{"", "AKIA", "ASIA" + id[4:], id + "A", "AKIA0000000000000000"} {
		if ValidAccessKeyID(bad) {
			t.Errorf("%q is accepted as an access key ID", bad)
		}
	}

	root, _ := GenerateRootKey(rand.Reader)
	// Derived keys: the same scope gives the same key, another scope or root
	// key another.
	d1, s1 := root.AccessKeyFor("alice\x00req-1")
	d2, s2 := root.AccessKeyFor("alice\x00req-1")
	d3, s3 := root.AccessKeyFor("alice\x00req-2")
	other0, _ := GenerateRootKey(rand.Reader)
	d4, _ := other0.AccessKeyFor("alice\x00req-1")
	if d1 != d2 || s1 != s2 || d1 == d3 || s1 == s3 || d1 == d4 || !ValidAccessKeyID(d1) || len(s1) != AccessKeySecretLen {
		t.Fatalf("derived access keys: %s %s %s %s", d1, d2, d3, d4)
	}
	sealed, err := root.SealAccessKeySecret(id, "alice", []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret)) {
		t.Fatal("the sealed secret holds the secret")
	}
	got, err := root.OpenAccessKeySecret(id, "alice", sealed)
	if err != nil || string(got) != secret {
		t.Fatalf("open: %q, %v", got, err)
	}
	other, _ := GenerateRootKey(rand.Reader)
	for name, open := range map[string]func() ([]byte, error){
		"another identity":   func() ([]byte, error) { return root.OpenAccessKeySecret(id, "mallory", sealed) },
		"another access key": func() ([]byte, error) { return root.OpenAccessKeySecret(id2, "alice", sealed) },
		"as key material":    func() ([]byte, error) { return root.Open(id, 0, sealed) },
		"another root key":   func() ([]byte, error) { return other.OpenAccessKeySecret(id, "alice", sealed) },
	} {
		if _, err := open(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: got %v, want ErrSealed", name, err)
		}
	}
}
