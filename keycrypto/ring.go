package keycrypto

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
)

// A root keyring lets an operator introduce a new root key without taking
// the old one away at once: new blobs are sealed under the newest key, and
// every key in the ring still opens what it sealed.
//
// Its file form (ParseRootKeyRing) is text, one key a line, oldest first:
//
//	# raftkms root keyring
//	8c1f0a9e2b7d4c61 <base64 of 32 bytes>
//	<base64 of 32 bytes>
//
// Each line is a root key as `kmsd gen-root-key` writes it, optionally
// preceded by its ID (RootKey.ID); a given ID must be the key's, so a line
// pasted from another file or cut short is refused. Blank lines and lines
// starting with '#' are ignored. The last key seals everything new. The
// first key is the ring's identity: its ID and check value are what the
// cluster's root-key check records, and it keys fingerprints and derived
// access keys, so it stays first until the cluster no longer needs it.

// ringHeader starts the file EncodeRootKey writes for a ring.
const ringHeader = "# raftkms root keyring: one key a line, oldest first; the last one seals new material\n"

// NewRootKeyRing makes a ring of keys, oldest first; the last seals new
// blobs. A ring of one key is that key. Duplicate keys are refused.
func NewRootKeyRing(keys ...*RootKey) (*RootKey, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: a root keyring needs at least one key", ErrInvalidRootKey)
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k == nil || k.members != nil {
			return nil, fmt.Errorf("%w: a root keyring holds single root keys", ErrInvalidRootKey)
		}
		if seen[k.ID()] {
			return nil, fmt.Errorf("%w: root key %s is in the ring twice", ErrInvalidRootKey, k.ID())
		}
		seen[k.ID()] = true
	}
	if len(keys) == 1 {
		return keys[0], nil
	}
	ring := *keys[0]
	ring.sealer = keys[len(keys)-1]
	ring.members = append([]*RootKey(nil), keys...)
	return &ring, nil
}

// Keys are the ring's keys, oldest first (the key itself for a single
// root key).
func (r *RootKey) Keys() []*RootKey {
	if r.members == nil {
		return []*RootKey{r}
	}
	return append([]*RootKey(nil), r.members...)
}

// KeyIDs are the IDs of the ring's keys, oldest first.
func (r *RootKey) KeyIDs() []string {
	keys := r.Keys()
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return ids
}

// SealingKeyID is the ID of the key new blobs are sealed under: the
// ring's newest (ID for a single root key).
func (r *RootKey) SealingKeyID() string {
	if r.sealer != nil {
		return r.sealer.ID()
	}
	return r.ID()
}

// HasKeyID reports whether the ring holds the root key with this ID.
func (r *RootKey) HasKeyID(id string) bool {
	for _, k := range r.Keys() {
		if k.ID() == id {
			return true
		}
	}
	return false
}

// ringMatches reports, in constant time per key, whether cv is the check
// value of any key in the ring.
func (r *RootKey) ringMatches(cv []byte) bool {
	ok := false
	for _, k := range r.members {
		if k.MatchesCheckValue(cv) {
			ok = true
		}
	}
	return ok
}

// openRing opens a blob with the ring: a format 2 blob with the key it
// names, a format 1 blob (which names none) with the first key that opens
// it, oldest first.
func (r *RootKey) openRing(aad, sealed []byte) ([]byte, error) {
	if id, ok := SealedRootKeyID(sealed); ok {
		for _, k := range r.members {
			if k.ID() == id {
				return k.open(aad, sealed)
			}
		}
		return nil, &wrongRootKeyError{sealed: id, held: strings.Join(r.KeyIDs(), ", ")}
	}
	if len(sealed) == 0 || sealed[0] != sealFormatV1 {
		return r.members[0].open(aad, sealed) // the error of what it is not
	}
	var err error
	for _, k := range r.members {
		var pt []byte
		if pt, err = k.open(aad, sealed); err == nil {
			return pt, nil
		}
	}
	return nil, err
}

// isRingFile tells a keyring file from a single base64 key: it has a
// comment, more than one key line, or an ID before the key.
func isRingFile(data []byte) bool {
	lines := 0
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"), strings.ContainsAny(line, " \t"):
			return true
		default:
			lines++
		}
	}
	return lines > 1
}

// ParseRootKeyRing reads a root keyring file (see the comment on ring
// files above). Errors name line numbers and IDs, never key bytes.
func ParseRootKeyRing(data []byte) (*RootKey, error) {
	var keys []*RootKey
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 2 {
			return nil, fmt.Errorf("%w: keyring line %d: want [ID] KEY", ErrInvalidRootKey, n+1)
		}
		raw, err := base64.StdEncoding.DecodeString(fields[len(fields)-1])
		if err != nil {
			return nil, fmt.Errorf("%w: keyring line %d is not base64", ErrInvalidRootKey, n+1)
		}
		k, err := NewRootKey(raw)
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("keyring line %d: %w", n+1, err)
		}
		if len(fields) == 2 && fields[0] != k.ID() {
			return nil, fmt.Errorf("%w: keyring line %d says root key %s, but its key is %s", ErrInvalidRootKey, n+1, fields[0], k.ID())
		}
		keys = append(keys, k)
	}
	return NewRootKeyRing(keys...)
}

// encodeRing is EncodeRootKey for a ring: the header and one "ID KEY" line
// a key, oldest first.
func encodeRing(r *RootKey) []byte {
	var b bytes.Buffer
	b.WriteString(ringHeader)
	for _, k := range r.members {
		b.WriteString(k.ID() + " " + base64.StdEncoding.EncodeToString(k.raw[:]) + "\n")
	}
	return b.Bytes()
}
