package keycrypto

import (
	"fmt"
	"sync"
)

// DefaultCacheKeys bounds how many keys a Cache holds version keys for.
const DefaultCacheKeys = 100_000

// Cache keeps one prepared key per key version — a VersionKey for
// symmetric keys, an AsymmetricKey (parsed private key) for RSA and ECC
// keys, a MACKey for HMAC keys — so crypto calls unseal and parse a
// version's material once per node, not once per call (parsing an RSA key
// costs more than signing with it). Unsealed material lives only inside the
// prepared keys held here, in memory: the raw bytes are cleared as soon as
// the prepared key is built, and what remains (the AES key schedule, the
// HMAC's hashed key blocks, the parsed private key) is internal to the
// standard library, which offers no way to wipe it. Forget and Purge drop
// the references, so the garbage collector reclaims it; a call already
// holding a prepared key finishes with it safely.
type Cache struct {
	max int

	mu   sync.RWMutex
	keys map[string]map[uint32]any
}

// NewCache makes a cache for up to maxKeys keys (0 = DefaultCacheKeys).
func NewCache(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultCacheKeys
	}
	return &Cache{max: maxKeys, keys: map[string]map[uint32]any{}}
}

// Get returns the VersionKey of a key version, calling open for its
// plaintext material on a miss. The material is cleared once the
// VersionKey is built.
func (c *Cache) Get(keyID string, version uint32, open func() ([]byte, error)) (*VersionKey, error) {
	return getAs(c, keyID, version, open, func(m []byte) (*VersionKey, error) { return NewVersionKey(keyID, version, m) })
}

// Asymmetric returns the parsed private key of a version of an RSA or ECC
// key of the given spec, calling open for its PKCS#8 material on a miss.
func (c *Cache) Asymmetric(keyID string, version uint32, spec string, open func() ([]byte, error)) (*AsymmetricKey, error) {
	return getAs(c, keyID, version, open, func(m []byte) (*AsymmetricKey, error) { return ParseAsymmetricKey(spec, m) })
}

// MAC returns the MACKey of a version of an HMAC key of the given spec,
// calling open for its material on a miss.
func (c *Cache) MAC(keyID string, version uint32, spec string, open func() ([]byte, error)) (*MACKey, error) {
	return getAs(c, keyID, version, open, func(m []byte) (*MACKey, error) { return NewMACKey(spec, m) })
}

// getAs is the lookup of Get, Asymmetric and MAC. A key's spec never
// changes, so a cached entry of another type than asked for is a caller
// mixing up keys: it is an error, never a silent rebuild.
func getAs[T any](c *Cache, keyID string, version uint32, open func() ([]byte, error), build func([]byte) (T, error)) (T, error) {
	var zero T
	c.mu.RLock()
	e, ok := c.keys[keyID][version]
	c.mu.RUnlock()
	if ok {
		if k, ok := e.(T); ok {
			return k, nil
		}
		return zero, fmt.Errorf("keycrypto: key %s version %d is cached as another kind of key", keyID, version)
	}
	material, err := open()
	if err != nil {
		return zero, err
	}
	k, err := build(material)
	clear(material)
	if err != nil {
		return zero, err
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
		vs = map[uint32]any{}
		c.keys[keyID] = vs
	}
	if old, ok := vs[version].(T); ok {
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
	c.keys = map[string]map[uint32]any{}
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
