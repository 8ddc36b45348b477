package keycrypto

import "sync"

// DefaultCacheKeys bounds how many keys a Cache holds version keys for.
const DefaultCacheKeys = 100_000

// Cache keeps one VersionKey per key version, so Encrypt and Decrypt
// unseal a version's material once per node, not once per call. Unsealed
// material lives only inside the VersionKeys held here, in memory: the raw
// bytes are cleared as soon as the VersionKey is built, and what remains
// (the AES key schedule, the HMAC's hashed key blocks) is internal to the
// standard library, which offers no way to wipe it. Forget and Purge drop
// the references, so the garbage collector reclaims it; a call already
// holding a VersionKey finishes with it safely.
type Cache struct {
	max int

	mu   sync.RWMutex
	keys map[string]map[uint32]*VersionKey
}

// NewCache makes a cache for up to maxKeys keys (0 = DefaultCacheKeys).
func NewCache(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultCacheKeys
	}
	return &Cache{max: maxKeys, keys: map[string]map[uint32]*VersionKey{}}
}

// Get returns the VersionKey of a key version, calling open for its
// plaintext material on a miss. The material is cleared once the
// VersionKey is built.
func (c *Cache) Get(keyID string, version uint32, open func() ([]byte, error)) (*VersionKey, error) {
	c.mu.RLock()
	k, ok := c.keys[keyID][version]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	material, err := open()
	if err != nil {
		return nil, err
	}
	k, err = NewVersionKey(keyID, version, material)
	clear(material)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	vs, ok := c.keys[keyID]
	if !ok {
		if len(c.keys) >= c.max {
			// Evict an arbitrary key; it is unsealed again on its next use.
			for k := range c.keys {
				delete(c.keys, k)
				break
			}
		}
		vs = map[uint32]*VersionKey{}
		c.keys[keyID] = vs
	}
	if old, ok := vs[version]; ok {
		return old, nil
	}
	vs[version] = k
	return k, nil
}

// Forget drops every cached version of a key (its material was deleted or
// expired).
func (c *Cache) Forget(keyID string) {
	c.mu.Lock()
	delete(c.keys, keyID)
	c.mu.Unlock()
}

// Purge drops everything (the whole state was replaced by a snapshot).
func (c *Cache) Purge() {
	c.mu.Lock()
	c.keys = map[string]map[uint32]*VersionKey{}
	c.mu.Unlock()
}

// Len is the number of key versions cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, vs := range c.keys {
		n += len(vs)
	}
	return n
}
