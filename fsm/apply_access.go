package fsm

import "sort"

// maxAccessKeyIDBytes bounds an access key ID (AWS access key IDs are 16 to
// 128 characters).
const maxAccessKeyIDBytes = 128

func init() {
	register("create_access_key", applyCreateAccessKey)
	register("delete_access_key", applyDeleteAccessKey)
}

// AccessKey is an access key of the AWS-protocol front: requests signed
// (SigV4) with it act as Identity, exactly as a certificate identity does.
type AccessKey struct {
	ID           string // access key ID, chosen by the proposer
	Identity     string // the principal the key signs as
	SealedSecret []byte // secret access key sealed under the root key, bound to ID
	CreatedAt    int64  // Unix nanoseconds, from the CreateAccessKey event
}

func applyCreateAccessKey(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCreateAccessKey()
	switch {
	case e.AccessKeyId == "" || len(e.AccessKeyId) > maxAccessKeyIDBytes:
		return failed("", reject(CodeValidation, "access key ID must be 1 to %d bytes", maxAccessKeyIDBytes))
	case e.Identity == "" || len(e.Identity) > maxPrincipalBytes:
		return failed("", reject(CodeValidation, "access key identity must be 1 to %d bytes", maxPrincipalBytes))
	case len(e.SealedSecret) == 0:
		return failed("", reject(CodeValidation, "access key secret is required"))
	}
	if _, ok := f.accessKeys[e.AccessKeyId]; ok {
		return failed("", reject(CodeAlreadyExists, "access key %s already exists", e.AccessKeyId))
	}
	f.accessKeys[e.AccessKeyId] = &AccessKey{ID: e.AccessKeyId, Identity: e.Identity,
		SealedSecret: e.SealedSecret, CreatedAt: c.t}
	return &Result{}
}

func applyDeleteAccessKey(f *FSM, c *applyCtx) *Result {
	id := c.env.GetDeleteAccessKey().AccessKeyId
	if _, ok := f.accessKeys[id]; !ok {
		return failed("", reject(CodeNotFound, "access key %s is not found", id))
	}
	delete(f.accessKeys, id)
	return &Result{}
}

// AccessKey returns the access key with this ID (read-only).
func (f *FSM) AccessKey(id string) (*AccessKey, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.accessKeys[id]
	return a, ok
}

// AccessKeys returns the access keys of one identity ("" = all), sorted by
// ID (read-only).
func (f *FSM) AccessKeys(identity string) []*AccessKey {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return sortedAccessKeys(f.accessKeys, identity)
}

func sortedAccessKeys(m map[string]*AccessKey, identity string) []*AccessKey {
	out := make([]*AccessKey, 0, len(m))
	for _, a := range m {
		if identity == "" || a.Identity == identity {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
