package rpc

import (
	"slices"
	"strings"
	"sync"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
)

// Authorization verdicts are cached so that a crypto call does not evaluate
// the key policy and grants again for every request of the same caller.
//
// What makes the cache exact is what it is keyed by: the *fsm.Key the
// verdict was computed from. The state machine never changes a key in place
// (fsm.Key): every applied change to a key — its state, policy, grants,
// versions — swaps in a new *fsm.Key. A request looks its key up in the
// applied state after its read barrier and uses a cached verdict only when
// the cache holds that same pointer; a verdict computed from any earlier
// snapshot of the key is never used again once the change is applied. The
// cache holds the pointer, so the old snapshot cannot be freed and its
// address reused while an entry names it. KeyChanged (the state machine's
// change notification) drops a changed key's entry, so stale snapshots do
// not stay in memory.
//
// A verdict is cached only when it does not depend on the request: a policy
// statement with conditions, or a grant with encryption-context constraints,
// that could apply to (identity, action) makes the verdict verdictDepends,
// and those requests are evaluated in full every time. Everything else the
// decision reads is fixed for the life of the server (Auth, ARN).

// authzVerdict is what a key's policy and grants say about one (identity,
// action), whatever the request's facts.
type authzVerdict uint8

const (
	verdictDepends    authzVerdict = iota // conditions or constrained grants: evaluate the request
	verdictAllow                          // allowed, whatever the facts
	verdictDenyPolicy                     // an unconditional Deny in the key policy applies
	verdictDenyNone                       // no statement and no grant can allow it
)

// Bounds of the cache: keys with cached verdicts, and verdicts per key
// (distinct identity and action pairs).
const (
	authzMaxKeys      = 10_000
	authzMaxPerKey    = 1024
	authzEvictPerFill = 64 // keys dropped at once when the cache is full
)

// authzKey names one cached decision of a key.
type authzKey struct {
	identity string
	role     pki.Role
	action   string
}

// keyVerdicts are the verdicts computed from one snapshot of a key.
type keyVerdicts struct {
	key      *fsm.Key // the snapshot they were computed from
	verdicts map[authzKey]authzVerdict
}

// authzCache maps key IDs to the verdicts of their current snapshot.
type authzCache struct {
	mu   sync.RWMutex
	keys map[string]*keyVerdicts
}

// get returns the cached verdict for k exactly as given (the same pointer).
func (c *authzCache) get(k *fsm.Key, ak authzKey) (authzVerdict, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.keys[k.ID]
	if e == nil || e.key != k {
		return 0, false
	}
	v, ok := e.verdicts[ak]
	return v, ok
}

// putIfCurrent caches a verdict computed from k, if k is still the key's current
// snapshot in f (a request that raced with a change does not put the old
// snapshot back after KeyChanged dropped it).
func (c *authzCache) putIfCurrent(f *fsm.FSM, k *fsm.Key, ak authzKey, v authzVerdict) {
	if cur, ok := f.Key(k.ID); ok && cur == k {
		c.put(k, ak, v)
	}
}

// put caches a verdict computed from k, within the cache's bounds.
func (c *authzCache) put(k *fsm.Key, ak authzKey, v authzVerdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = map[string]*keyVerdicts{}
	}
	e := c.keys[k.ID]
	if e == nil || e.key != k {
		if e == nil && len(c.keys) >= authzMaxKeys {
			n := 0
			for id := range c.keys {
				delete(c.keys, id)
				if n++; n >= authzEvictPerFill {
					break
				}
			}
		}
		e = &keyVerdicts{key: k, verdicts: map[authzKey]authzVerdict{}}
		c.keys[k.ID] = e
	}
	if len(e.verdicts) >= authzMaxPerKey {
		clear(e.verdicts)
	}
	e.verdicts[ak] = v
}

// forget drops a key's verdicts ("" drops every key's).
func (c *authzCache) forget(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if keyID == "" {
		c.keys = nil
		return
	}
	delete(c.keys, keyID)
}

// size is the number of cached verdicts, for tests.
func (c *authzCache) size() (keys, verdicts int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.keys {
		verdicts += len(e.verdicts)
	}
	return len(c.keys), verdicts
}

// verdictFor works out what k's policy and grants say about identity
// performing action for any request: the fact-independent part of
// authorize's decision.
func (s *Server) verdictFor(k *fsm.Key, identity, action string) authzVerdict {
	p := s.keyPolicy(k)
	unconditionalAllow, conditional := false, false
	if p != nil {
		for i := range p.statements {
			st := &p.statements[i]
			if !st.appliesTo(identity, action) {
				continue
			}
			switch {
			case len(st.conds) > 0:
				conditional = true
			case !st.allow:
				return verdictDenyPolicy // a Deny that holds whatever the facts
			default:
				unconditionalAllow = true
			}
		}
	}
	if conditional {
		// A conditional Deny could override the Allow, and a conditional
		// Allow could allow what no grant gives: the facts decide.
		return verdictDepends
	}
	if unconditionalAllow {
		return verdictAllow
	}
	op := strings.TrimPrefix(action, "kms:")
	constrained := false
	for i := range k.Grants {
		g := &k.Grants[i]
		if _, gives := slices.BinarySearch(g.Operations, op); g.Grantee != identity || !gives {
			continue
		}
		if len(g.ECSubset) == 0 && len(g.ECEquals) == 0 {
			return verdictAllow
		}
		constrained = true // the request's encryption context decides
	}
	if constrained {
		return verdictDepends
	}
	return verdictDenyNone
}
