package fsm

import (
	"slices"
	"sort"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func init() {
	register("create_grant", applyCreateGrant)
	register("retire_grant", applyRetireGrant)
	register("revoke_grant", applyRevokeGrant)
}

// MaxGrantsPerKey bounds a key's grants (LimitExceeded beyond it).
const MaxGrantsPerKey = 1000

// Grant delegates operations on one key to a principal, as AWS KMS grants
// do. Who may create, retire and revoke a grant is decided by the proposer
// (rpc); the state machine keeps the grants and applies the changes.
type Grant struct {
	ID         string   // chosen by the proposer (64 hex digits)
	Token      string   // chosen by the proposer; names the grant without its key
	Name       string   // optional; a name with the same parameters is the same grant
	Grantee    string   // the principal the grant is for
	Retiring   string   // the principal that may retire it ("" = none besides the grantee)
	Issuer     string   // the principal that created it
	Operations []string // operation names without "kms:", sorted and unique
	// Constraints on the request's encryption context, sorted by key.
	ECSubset, ECEquals []Tag
	CreatedAt          int64
}

// Allows reports whether the grant covers operation (without "kms:") for a
// request with encryption context ec.
func (g *Grant) Allows(operation string, ec map[string]string) bool {
	if _, ok := slices.BinarySearch(g.Operations, operation); !ok {
		return false
	}
	if len(g.ECEquals) > 0 {
		if len(ec) != len(g.ECEquals) {
			return false
		}
		for _, t := range g.ECEquals {
			if v, ok := ec[t.Key]; !ok || v != t.Value {
				return false
			}
		}
	}
	for _, t := range g.ECSubset {
		if v, ok := ec[t.Key]; !ok || v != t.Value {
			return false
		}
	}
	return true
}

// FindGrant returns the key's grant with this ID, or nil.
func (k *Key) FindGrant(id string) *Grant {
	i, ok := sort.Find(len(k.Grants), func(i int) int {
		switch {
		case id < k.Grants[i].ID:
			return -1
		case id > k.Grants[i].ID:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &k.Grants[i]
}

func sameTags(a []Tag, b []*eventsv1.Tag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func tagsFrom(in []*eventsv1.Tag) []Tag {
	if len(in) == 0 {
		return nil
	}
	out := make([]Tag, len(in))
	for i, t := range in {
		out[i] = Tag{Key: t.Key, Value: t.Value}
	}
	return out
}

func sortedUnique(tags []*eventsv1.Tag) bool {
	for i := 1; i < len(tags); i++ {
		if tags[i-1].Key >= tags[i].Key {
			return false
		}
	}
	return true
}

// applyCreateGrant adds a grant. A named grant whose name and parameters
// match an existing one is that grant: the result names it and nothing
// changes, so a retried CreateGrant never makes two.
func applyCreateGrant(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCreateGrant()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	switch k.State {
	case stEnabled, stDisabled:
	default:
		return failed(e.KeyId, invalidState(k))
	}
	cons := e.GetConstraints()
	switch {
	case len(e.GrantId) != 64 || e.GrantToken == "":
		return failed(e.KeyId, reject(CodeValidation, "a grant needs a grant ID and a token"))
	case e.GranteePrincipal == "":
		return failed(e.KeyId, reject(CodeValidation, "GranteePrincipal is required"))
	case len(e.Operations) == 0 || !slices.IsSorted(e.Operations) || len(slices.Compact(slices.Clone(e.Operations))) != len(e.Operations):
		return failed(e.KeyId, reject(CodeValidation, "grant operations must be given, sorted and unique"))
	case !sortedUnique(cons.GetEncryptionContextSubset()) || !sortedUnique(cons.GetEncryptionContextEquals()):
		return failed(e.KeyId, reject(CodeValidation, "grant constraints must be sorted by key and unique"))
	case k.FindGrant(e.GrantId) != nil:
		return failed(e.KeyId, reject(CodeAlreadyExists, "grant %s already exists", e.GrantId))
	}
	if e.Name != "" {
		for i := range k.Grants {
			g := &k.Grants[i]
			if g.Name == e.Name && g.Grantee == e.GranteePrincipal && g.Retiring == e.RetiringPrincipal &&
				slices.Equal(g.Operations, e.Operations) && sameTags(g.ECSubset, cons.GetEncryptionContextSubset()) &&
				sameTags(g.ECEquals, cons.GetEncryptionContextEquals()) {
				return &Result{KeyID: k.ID, Version: k.CurrentVersion(), GrantID: g.ID}
			}
		}
	}
	if len(k.Grants) >= MaxGrantsPerKey {
		return failed(e.KeyId, reject(CodeLimitExceeded, "key %s has reached its limit of %d grants", k.ID, MaxGrantsPerKey))
	}
	g := Grant{ID: e.GrantId, Token: e.GrantToken, Name: e.Name, Grantee: e.GranteePrincipal,
		Retiring: e.RetiringPrincipal, Issuer: c.env.Principal, Operations: slices.Clone(e.Operations),
		ECSubset: tagsFrom(cons.GetEncryptionContextSubset()), ECEquals: tagsFrom(cons.GetEncryptionContextEquals()),
		CreatedAt: c.t}
	i, _ := slices.BinarySearchFunc(k.Grants, g.ID, func(x Grant, id string) int {
		switch {
		case x.ID < id:
			return -1
		case x.ID > id:
			return 1
		}
		return 0
	})
	k.Grants = slices.Insert(slices.Clone(k.Grants), i, g)
	res := f.commit(c, k)
	res.GrantID = g.ID
	return res
}

func removeGrant(f *FSM, c *applyCtx, keyID, grantID string) *Result {
	k, r := f.editKey(keyID)
	if r != nil {
		return failed(keyID, r)
	}
	g := k.FindGrant(grantID)
	if g == nil {
		return failed(keyID, reject(CodeNotFound, "grant %s is not found on key %s", grantID, keyID))
	}
	k.Grants = slices.DeleteFunc(slices.Clone(k.Grants), func(x Grant) bool { return x.ID == grantID })
	if len(k.Grants) == 0 {
		k.Grants = nil
	}
	res := f.commit(c, k)
	res.GrantID = grantID
	return res
}

func applyRetireGrant(f *FSM, c *applyCtx) *Result {
	e := c.env.GetRetireGrant()
	return removeGrant(f, c, e.KeyId, e.GrantId)
}

func applyRevokeGrant(f *FSM, c *applyCtx) *Result {
	e := c.env.GetRevokeGrant()
	return removeGrant(f, c, e.KeyId, e.GrantId)
}
