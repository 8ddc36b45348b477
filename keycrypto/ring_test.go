package keycrypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// A ring seals under its newest key, opens what any of its keys sealed,
// and keeps the first key's ID, check value and fingerprints.
func TestRingSealsNewestOpensAll(t *testing.T) {
	k1, k2 := testRoot(t), testRoot(t)
	ring, err := NewRootKeyRing(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	material := bytes.Repeat([]byte{9}, 32)
	old, err := k1.Seal("key-a", 1, material)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ring.Seal("key-a", 2, material)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := SealedRootKeyID(sealed); id != k2.ID() || ring.SealingKeyID() != k2.ID() {
		t.Fatalf("ring sealed under %s (sealing key %s), want the newest %s", id, ring.SealingKeyID(), k2.ID())
	}
	for _, c := range []struct {
		name    string
		version uint32
		blob    []byte
	}{{"k1's blob", 1, old}, {"the ring's blob", 2, sealed}} {
		got, err := ring.Open("key-a", c.version, c.blob)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("%s: %x, %v", c.name, got, err)
		}
	}
	if _, err := k1.Open("key-a", 2, sealed); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("k1 alone opened the ring's new blob: %v", err)
	}
	if got, err := k2.Open("key-a", 2, sealed); err != nil || !bytes.Equal(got, material) {
		t.Fatalf("k2 alone: %x, %v", got, err)
	}
	if ring.ID() != k1.ID() || !bytes.Equal(ring.CheckValue(), k1.CheckValue()) {
		t.Fatalf("ring identity %s, want the first key's %s", ring.ID(), k1.ID())
	}
	if !ring.MatchesCheckValue(k1.CheckValue()) || !ring.MatchesCheckValue(k2.CheckValue()) ||
		ring.MatchesCheckValue(testRoot(t).CheckValue()) {
		t.Fatal("ring must match the check value of each of its keys and no other")
	}
	if !bytes.Equal(ring.Fingerprint("key-a", material), k1.Fingerprint("key-a", material)) {
		t.Fatal("ring fingerprints are not the first key's")
	}
	if ids := ring.KeyIDs(); len(ids) != 2 || ids[0] != k1.ID() || ids[1] != k2.ID() || !ring.HasKeyID(k2.ID()) || ring.HasKeyID(testRoot(t).ID()) {
		t.Fatalf("KeyIDs %v", ids)
	}

	priv, err := k1.SealPrivateKey("key-a", "tok", []byte("der"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ring.OpenPrivateKey("key-a", "tok", priv); err != nil || string(got) != "der" {
		t.Fatalf("private key sealed by k1: %q, %v", got, err)
	}
	sec, err := ring.SealAccessKeySecret("AKIAEXAMPLE", "alice", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := SealedRootKeyID(sec); id != k2.ID() {
		t.Fatalf("access-key secret sealed under %s", id)
	}
	if got, err := k2.OpenAccessKeySecret("AKIAEXAMPLE", "alice", sec); err != nil || string(got) != "secret" {
		t.Fatalf("access-key secret: %q, %v", got, err)
	}
}

// A blob of a key not in the ring is ErrWrongRootKey naming the ring's keys.
func TestRingRefusesOtherKey(t *testing.T) {
	k1, k2, k3 := testRoot(t), testRoot(t), testRoot(t)
	ring, err := NewRootKeyRing(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k3.Seal("key-a", 1, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ring.Open("key-a", 1, sealed)
	if !errors.Is(err, ErrWrongRootKey) || !strings.Contains(err.Error(), k3.ID()) || !strings.Contains(err.Error(), k2.ID()) {
		t.Fatalf("blob of a key outside the ring: %v", err)
	}
	// Tampering with the root-key ID of a blob makes it not open.
	good, _ := k1.Seal("key-a", 1, []byte("m"))
	bad := append([]byte(nil), good...)
	copy(bad[1:9], k2.id[:])
	if _, err := ring.Open("key-a", 1, bad); !errors.Is(err, ErrSealed) {
		t.Fatalf("blob relabelled to another ring key: %v", err)
	}
	if _, err := ring.Open("key-a", 1, nil); !errors.Is(err, ErrSealed) {
		t.Fatalf("empty blob: %v", err)
	}
	if _, err := NewRootKeyRing(k1, k2, k1); !errors.Is(err, ErrInvalidRootKey) {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := NewRootKeyRing(); !errors.Is(err, ErrInvalidRootKey) {
		t.Fatalf("empty ring: %v", err)
	}
}

// Format 1 blobs, which name no root key, open with whichever ring key
// sealed them.
func TestRingOpensFormat1(t *testing.T) {
	r := countingRoot(t)
	material, _ := hex.DecodeString("01a5a5a5a5a5a5a5a5a5a5a5a56305dee270de6acb6aeee1a0ea613567cf58f515a11303030415c53b6605b1d9c637068e2c29f0355051401aa83d0410")
	for _, keys := range [][]*RootKey{{testRoot(t), r}, {r, testRoot(t)}} {
		ring, err := NewRootKeyRing(keys...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ring.Open("key-a", 3, material)
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x42}, 32)) {
			t.Fatalf("format 1 material: %x, %v", got, err)
		}
		if _, err := ring.Open("key-a", 4, material); !errors.Is(err, ErrSealed) {
			t.Fatalf("format 1 under another version: %v", err)
		}
	}
}

// The ring file: the old single-key file still reads as one key; a ring
// file round-trips; IDs on lines are checked; errors carry no key bytes.
func TestParseRootKeyRing(t *testing.T) {
	k1, k2 := testRoot(t), testRoot(t)
	single, err := ParseRootKey(EncodeRootKey(k1))
	if err != nil || single.ID() != k1.ID() || len(single.Keys()) != 1 {
		t.Fatalf("single-key file: %v", err)
	}
	ring, _ := NewRootKeyRing(k1, k2)
	back, err := ParseRootKey(EncodeRootKey(ring))
	if err != nil || strings.Join(back.KeyIDs(), ",") != k1.ID()+","+k2.ID() || back.SealingKeyID() != k2.ID() {
		t.Fatalf("ring file round trip: %v, %v", back, err)
	}
	// Two bare `kmsd gen-root-key` outputs, one after the other, are a ring.
	bare := append(EncodeRootKey(k1), EncodeRootKey(k2)...)
	if back, err := ParseRootKey(bare); err != nil || back.SealingKeyID() != k2.ID() {
		t.Fatalf("two bare keys: %v", err)
	}
	k2line := strings.TrimSpace(string(EncodeRootKey(k2)))
	wrongID := "# ring\n" + k1.ID() + " " + k2line + "\n"
	_, err = ParseRootKey([]byte(wrongID))
	if !errors.Is(err, ErrInvalidRootKey) || strings.Contains(err.Error(), k2line) {
		t.Fatalf("line with another key's ID: %v", err)
	}
	for name, text := range map[string]string{
		"not base64": "# ring\n" + k1.ID() + " !!!\n",
		"short key":  "# ring\nAAAA\n",
		"too many":   "# ring\na b c\n",
		"no keys":    "# ring\n\n",
		"duplicate":  k2line + "\n" + k2line + "\n",
	} {
		if _, err := ParseRootKey([]byte(text)); !errors.Is(err, ErrInvalidRootKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
