package keycrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"sync"
)

// DefaultCacheKeys bounds how many keys a Cache holds AEADs for.
const DefaultCacheKeys = 100_000

// Cache keeps one AES-256-GCM AEAD per key version, so Encrypt and Decrypt
// unseal a version's material once per node, not once per call. Unsealed
// material lives only inside the AEADs held here, in memory.
type Cache struct {
	max int

	mu   sync.RWMutex
	keys map[string]map[uint32]cipher.AEAD
}

// NewCache makes a cache for up to maxKeys keys (0 = DefaultCacheKeys).
func NewCache(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultCacheKeys
	}
	return &Cache{max: maxKeys, keys: map[string]map[uint32]cipher.AEAD{}}
}

// Get returns the AEAD of a key version, calling open for its plaintext
// material on a miss. The material is cleared once the AEAD is built.
func (c *Cache) Get(keyID string, version uint32, open func() ([]byte, error)) (cipher.AEAD, error) {
	c.mu.RLock()
	a, ok := c.keys[keyID][version]
	c.mu.RUnlock()
	if ok {
		return a, nil
	}
	material, err := open()
	if err != nil {
		return nil, err
	}
	defer clear(material)
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err
	}
	if a, err = cipher.NewGCM(block); err != nil {
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
		vs = map[uint32]cipher.AEAD{}
		c.keys[keyID] = vs
	}
	if old, ok := vs[version]; ok {
		return old, nil
	}
	vs[version] = a
	return a, nil
}

// Forget drops every cached AEAD of a key (its material was deleted or expired).
func (c *Cache) Forget(keyID string) {
	c.mu.Lock()
	delete(c.keys, keyID)
	c.mu.Unlock()
}

// Purge drops everything (the whole state was replaced by a snapshot).
func (c *Cache) Purge() {
	c.mu.Lock()
	c.keys = map[string]map[uint32]cipher.AEAD{}
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
